"""Read commands: /start /help /retention /active /report /targets /trend (SPEC 7)."""

from __future__ import annotations

from datetime import timedelta

from telegram import Update

from bot import charts, metrics, reports, service
from bot.context import AppContext
from bot.i18n import t
from bot.parse import UsageError, parse_date_arg, parse_days, parse_metric_arg
from bot.tracking import utcnow
from handlers.permissions import GroupCall, group_command
from handlers.replies import reply, reply_photo


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
        lines.append(t(lang, "check_chat_id", chat_id=chat.id))
    else:
        lines.append(t(lang, "check_admin_private"))
    await reply(update, t(lang, "start", checklist="\n".join(lines)))


@group_command("retention", write=False)
async def on_retention(update: Update, context: AppContext, call: GroupCall) -> None:
    days = parse_days(call.args, "usage_retention")
    rows, settings = await service.retention_rows(
        context.repo, context.config, call.chat_id, days, utcnow()
    )
    await reply(
        update,
        reports.retention_table(rows, settings.windows, call.lang, settings.timezone),
        pre=True,
    )


@group_command("active", write=False)
async def on_active(update: Update, context: AppContext, call: GroupCall) -> None:
    days = parse_days(call.args, "usage_active")
    rows = await service.active_rows(context.repo, context.config, call.chat_id, days, utcnow())
    await reply(update, reports.active_table(rows, call.lang, call.settings.timezone), pre=True)


@group_command("report", write=False)
async def on_report(update: Update, context: AppContext, call: GroupCall) -> None:
    now = utcnow()
    today = metrics.local_day(now, call.settings.tz)
    day = parse_date_arg(call.args, "usage_report") or today - timedelta(days=1)
    if day > today:  # nothing happened yet: no report, and no target missed
        last = (today - timedelta(days=1)).isoformat()
        tz = call.settings.timezone
        await reply(update, t(call.lang, "report_not_begun", date=day, tz=tz, last=last))
        return
    result = await service.digest(context.repo, context.config, call.chat_id, day, now)
    text = reports.digest_text(
        result.report,
        call.lang,
        call.title,
        result.net,
        result.changes,
        top_source=result.top_source,
    )
    await reply(update, text, pre=True)


@group_command("targets", write=False)
async def on_targets(update: Update, context: AppContext, call: GroupCall) -> None:
    now = utcnow()
    day = metrics.local_day(now, call.settings.tz) - timedelta(days=1)
    result = await service.digest(context.repo, context.config, call.chat_id, day, now)
    await reply(update, reports.targets_text(result.report, call.lang, result.changes), pre=True)


@group_command("trend", write=False)
async def on_trend(update: Update, context: AppContext, call: GroupCall) -> None:
    if not call.args or len(call.args) > 2:
        raise UsageError("usage_trend")
    metric = parse_metric_arg(call.args[0], "usage_trend")
    days = parse_days(call.args[1:], "usage_trend", default=30)
    series, target = await service.metric_series(
        context.repo, context.config, call.chat_id, metric, days, utcnow()
    )
    png = charts.trend_png(metric, series, target, call.lang, call.title or str(call.chat_id))
    name = reports.metric_label(call.lang, metric)
    await reply_photo(update, png, t(call.lang, "trend_caption", metric=name, days=days))
