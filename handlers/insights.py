"""Growth commands: /sources /funnel /referrals /hours /quiet (SPEC 12), each a thin call of
the insights report over the last N local days, today included."""

from __future__ import annotations

import html
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from telegram import Update
from telegram.error import Forbidden

from bot import charts, metrics
from bot.chat_text import fit_lines
from bot.cli_insights import best_hours, funnel_lines, referral_line, sources_lines, title_line
from bot.context import AppContext
from bot.i18n import t
from bot.insights_service import insights_report
from bot.parse import parse_days
from bot.tracking import utcnow
from handlers.permissions import GroupCall, group_command
from handlers.replies import reply, reply_photo, send_html

DEFAULT_DAYS = 30
QUIET_DAYS = 7


async def _report(
    context: AppContext, call: GroupCall, usage: str, default: int = DEFAULT_DAYS
) -> tuple[dict[str, Any], date, date]:
    """The insights report of the last N local days (the command's argument), today last."""
    days = parse_days(call.args, usage, default=default)
    now = utcnow()
    last = metrics.local_day(now, call.settings.tz)
    first = last - timedelta(days=days - 1)
    report = await insights_report(context.repo, context.config, call.chat_id, first, last, now)
    return report, first, last


@group_command("sources", write=False)
async def on_sources(update: Update, context: AppContext, call: GroupCall) -> None:
    report, _, _ = await _report(context, call, "usage_sources")
    text = [title_line(report, call.lang, call.title), "", *sources_lines(report, call.lang)]
    await reply(update, "\n".join(text), pre=True)


@group_command("referrals", write=False)
async def on_referrals(update: Update, context: AppContext, call: GroupCall) -> None:
    report, _, _ = await _report(context, call, "usage_referrals")
    text = [title_line(report, call.lang, call.title), "", referral_line(report, call.lang)]
    await reply(update, "\n".join(text))


@group_command("funnel", write=False)
async def on_funnel(update: Update, context: AppContext, call: GroupCall) -> None:
    report, first, last = await _report(context, call, "usage_funnel")
    funnel = report["funnel"]
    steps = [
        (t(charts.chart_language(call.lang), f"insights_step_{s['step']}"), s["users"], s["share"])
        for s in funnel["steps"]
    ]
    fig = charts.funnel_figure(steps, funnel["pending"], call.lang, call.title, first, last)
    title = title_line(report, call.lang, call.title)
    await reply_photo(update, charts.png(fig), title)
    await reply(update, "\n".join([title, "", *funnel_lines(report, call.lang)]), pre=True)


@group_command("hours", write=False)
async def on_hours(update: Update, context: AppContext, call: GroupCall) -> None:
    report, first, last = await _report(context, call, "usage_hours")
    hours = report["hours"]
    fig = charts.hours_figure(hours["messages"], call.lang, call.title, first, last)
    caption = [title_line(report, call.lang, call.title), *best_hours(hours, call.lang)]
    await reply_photo(update, charts.png(fig), "\n".join(caption))


# names of members: admins only, even with public_commands (like /export)
@group_command("quiet", write=True)
async def on_quiet(update: Update, context: AppContext, call: GroupCall) -> None:
    """The list goes to the admin's private chat (names link to the members), never to the
    group: the host greets them one by one."""
    report, first, last = await _report(context, call, "usage_quiet", default=QUIET_DAYS)
    text = quiet_html(report, call.lang, call.title, call.settings.tz)
    try:
        await send_html(context.bot, call.user_id, text)
    except Forbidden:
        await reply(update, t(call.lang, "quiet_start_bot"))
        return
    await reply(update, t(call.lang, "quiet_private"))


def quiet_html(report: dict[str, Any], lang: str, title: str, tz: ZoneInfo) -> str:
    """The quiet newcomers as HTML: each name a link to the member (tg://user?id=), every
    name escaped; cut to whole lines so it fits one message."""
    quiet = report["quiet"]
    head = t(
        lang,
        "quiet_title",
        title=title,
        start=report["from"],
        end=report["to"],
        tz=report["timezone"],
        n=len(quiet),
    )
    if not quiet:
        return html.escape(f"{head}\n{t(lang, 'quiet_none')}")
    rows: list[tuple[str, str]] = []  # (HTML, the text Telegram shows of it)
    for q in quiet:
        name = q["name"] or str(q["user_id"])
        joined = datetime.fromisoformat(q["joined"].replace("Z", "+00:00")).astimezone(tz)
        tail = (
            (f" @{q['username']}" if q["username"] else "")
            + " · "
            + t(lang, "quiet_joined", time=f"{joined:%Y-%m-%d %H:%M}")
        )
        link = f'<a href="tg://user?id={int(q["user_id"])}">{html.escape(name)}</a>'
        rows.append((f"• {link}{html.escape(tail)}", f"• {name}{tail}"))
    return fit_lines(
        (html.escape(head), head), rows, lambda n: html.escape(t(lang, "quiet_more", n=n))
    )
