"""Read commands: /start /help /retention /active /report /targets /trend (SPEC 7)."""

from __future__ import annotations

import html
from datetime import timedelta

from telegram import Update
from telegram.constants import ParseMode

from bot import charts, metrics, reports, service
from bot.context import AppContext
from bot.i18n import t
from bot.parse import UsageError, parse_date_arg, parse_days
from bot.targets import parse_metric
from bot.tracking import utcnow
from handlers.permissions import GroupCall, group_command


def language_for(update: Update, context: AppContext) -> str:
    chat = update.effective_chat
    if chat is not None and chat.type in ("group", "supergroup"):
        return context.settings(chat.id).language
    user = update.effective_user
    code = (user.language_code or "") if user else ""
    return "zh" if code.startswith("zh") else context.config.defaults.language


async def on_start(update: Update, context: AppContext) -> None:
    msg, chat = update.effective_message, update.effective_chat
    if msg is None or chat is None:
        return
    lang = language_for(update, context)
    if chat.type in ("group", "supergroup"):
        lang = (await service.group_settings(context.repo, context.config, chat.id)).language
    privacy_off = bool(context.bot_data.get("can_read_all_group_messages"))
    lines = [t(lang, "check_privacy_ok" if privacy_off else "check_privacy_bad")]
    if chat.type in ("group", "supergroup"):
        info = await context.repo.chat(chat.id)
        admin = bool(info and info.bot_is_admin)
        lines.append(t(lang, "check_admin_ok" if admin else "check_admin_bad"))
    else:
        lines.append(t(lang, "check_admin_private"))
    await msg.reply_text(t(lang, "start", checklist="\n".join(lines)))


def pre(text: str) -> str:
    """A monospace block: tables stay aligned on a phone."""
    return f"<pre>{html.escape(text)}</pre>"


async def _reply_pre(update: Update, text: str) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(pre(text), parse_mode=ParseMode.HTML)


@group_command("retention", write=False)
async def on_retention(update: Update, context: AppContext, call: GroupCall) -> None:
    days = parse_days(call.args, "usage_retention")
    rows, settings = await service.retention_rows(
        context.repo, context.config, call.chat_id, days, utcnow()
    )
    await _reply_pre(
        update, reports.retention_table(rows, settings.windows, call.lang, settings.timezone)
    )


@group_command("active", write=False)
async def on_active(update: Update, context: AppContext, call: GroupCall) -> None:
    days = parse_days(call.args, "usage_active")
    rows = await service.active_rows(context.repo, context.config, call.chat_id, days, utcnow())
    await _reply_pre(update, reports.active_table(rows, call.lang, call.settings.timezone))


@group_command("report", write=False)
async def on_report(update: Update, context: AppContext, call: GroupCall) -> None:
    now = utcnow()
    day = parse_date_arg(call.args, "usage_report") or (
        metrics.local_day(now, call.settings.tz) - timedelta(days=1)
    )
    result = await service.digest(context.repo, context.config, call.chat_id, day, now)
    text = reports.digest_text(result.report, call.lang, call.title, result.net, result.changes)
    await _reply_pre(update, text)


@group_command("targets", write=False)
async def on_targets(update: Update, context: AppContext, call: GroupCall) -> None:
    now = utcnow()
    day = metrics.local_day(now, call.settings.tz) - timedelta(days=1)
    result = await service.digest(context.repo, context.config, call.chat_id, day, now)
    await _reply_pre(update, reports.targets_text(result.report, call.lang, result.changes))


@group_command("trend", write=False)
async def on_trend(update: Update, context: AppContext, call: GroupCall) -> None:
    if not call.args or len(call.args) > 2:
        raise UsageError("usage_trend")
    try:
        metric = parse_metric(call.args[0])
    except ValueError:
        raise UsageError("usage_trend", t(call.lang, "unknown_metric")) from None
    days = parse_days(call.args[1:], "usage_trend", default=30)
    series, target = await service.metric_series(
        context.repo, context.config, call.chat_id, metric, days, utcnow()
    )
    png = charts.trend_png(metric, series, target, call.lang, call.title or str(call.chat_id))
    assert update.effective_message is not None
    await update.effective_message.reply_photo(
        png,
        caption=t(
            call.lang, "trend_caption", metric=charts.metric_name(metric, call.lang), days=days
        ),
    )
