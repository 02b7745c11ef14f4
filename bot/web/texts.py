"""The dashboard's page texts in zh and en (chat texts live in bot/i18n)."""

from __future__ import annotations

from collections.abc import Iterable

from bot.i18n import t
from bot.insights import FUNNEL_STEPS
from bot.reports import metric_label, window_label

ECHARTS = "echarts-5.6.0.min.js"

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "title": "opsbot dashboard",
        "menu": "Dashboard",
        "groups": "Your groups",
        "no_groups": "You are not an admin of any group opsbot is in.",
        "kpis": "Targets",
        "cohorts": "Retention by join day",
        "trends": "Trends",
        "audience": "Daily audience and active rates",
        "funnel": "Newcomer funnel",
        "sources": "Where newcomers come from",
        "hours": "Member messages by weekday and hour",
        "quiet": "Quiet newcomers",
        "from": "From",
        "to": "To",
        "apply": "Show",
        "csv": "Download CSV",
        "pending": "pending",
        "met": "met",
        "missed": "missed",
        "no_value": "no value yet",
        "vs_before": "vs the day before",
        "source": "Source",
        "joins": "Joins",
        "activated": "Activated",
        "name": "Name",
        "joined": "Joined",
        "none": "None",
        "audience_n": "audience",
        "report_day": "Report day",
        "back": "All groups",
        "retained": "retained",
        "matured": "matured",
        "error_401": (
            "Please open the dashboard from the bot (/dashboard), or ask it for a new login link."
        ),
        "error_403": "Only the group's admins can see its dashboard.",
        "error_404": "No such group.",
        "error_429": "Too many attempts. Wait a minute, then try again.",
        "error_400": "That request is not valid.",
        "error_501": "Not available yet.",
        "signing_in": "Signing in…",
        "open_in_telegram": "Open this page from the bot's button in Telegram.",
        "weekdays": "Mon,Tue,Wed,Thu,Fri,Sat,Sun",
    },
    "zh": {
        "title": "opsbot 数据仪表盘",
        "menu": "仪表盘",
        "groups": "你管理的群",
        "no_groups": "你不是 opsbot 所在任何群的管理员。",
        "kpis": "目标",
        "cohorts": "按进群日期的留存",
        "trends": "趋势",
        "audience": "每日可见人数与活跃率",
        "funnel": "新成员漏斗",
        "sources": "新成员来源",
        "hours": "成员发言（按星期与小时）",
        "quiet": "未发言的新成员",
        "from": "从",
        "to": "到",
        "apply": "查看",
        "csv": "下载 CSV",
        "pending": "待定",
        "met": "达标",
        "missed": "未达标",
        "no_value": "暂无数值",
        "vs_before": "较前一天",
        "source": "来源",
        "joins": "进群",
        "activated": "已激活",
        "name": "名字",
        "joined": "进群时间",
        "none": "无",
        "audience_n": "可见人数",
        "report_day": "日报日期",
        "back": "全部群",
        "retained": "留存",
        "matured": "已满期",
        "error_401": "请从机器人打开仪表盘（/dashboard），或让它发一个新的登录链接。",
        "error_403": "只有本群管理员可以查看它的仪表盘。",
        "error_404": "没有这个群。",
        "error_429": "尝试次数过多，请一分钟后再试。",
        "error_400": "请求无效。",
        "error_501": "暂不可用。",
        "signing_in": "正在登录…",
        "open_in_telegram": "请在 Telegram 里通过机器人的按钮打开本页。",
        "weekdays": "周一,周二,周三,周四,周五,周六,周日",
    },
}


def texts(lang: str) -> dict[str, str]:
    return TEXTS.get(lang, TEXTS["en"])


def names(lang: str, windows: Iterable[str], metrics: Iterable[str]) -> dict[str, object]:
    """What the page calls the ids in the JSON answers, from the chat texts: metrics,
    retention windows, funnel steps, and the target and percentage-point templates."""
    windows = list(windows)
    ids = [f"retention_{w}" for w in windows] + ["response_rate", "interaction_rate", *metrics]
    return {
        "metrics": {m: metric_label(lang, m) for m in ids},
        "windows": {w: _capital(window_label(lang, w)) for w in windows},
        "steps": {s: _capital(t(lang, f"insights_step_{s}")) for s in FUNNEL_STEPS},
        "target": t(lang, "chart_target", value="{value}"),
        "pp": t(lang, "pp", n="{n}"),
    }


def _capital(label: str) -> str:
    return label[:1].upper() + label[1:]
