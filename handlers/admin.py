"""Admin commands: /settarget /hosts /settings /export (SPEC 7)."""

from __future__ import annotations

import time

from telegram import InputFile, Update
from telegram.error import Forbidden, TelegramError

from bot import exporting, reports, schedule
from bot.context import AppContext
from bot.i18n import t
from bot.parse import UsageError, parse_days, parse_settarget, parse_setting
from bot.tracking import utcnow
from handlers.permissions import GroupCall, group_command
from handlers.replies import reply


@group_command("settarget", write=True)
async def on_settarget(update: Update, context: AppContext, call: GroupCall) -> None:
    change = parse_settarget(call.args)
    await context.repo.set_chat_target(
        call.chat_id, change.metric, change.value, change.range, call.user_id, utcnow()
    )
    name = reports.metric_label(call.lang, change.metric)
    if change.value is None:
        text = t(call.lang, "target_off", metric=name)
    else:
        rng = f" ({change.range})" if change.range else ""
        text = t(call.lang, "target_set", metric=name, value=f"{change.value * 100:g}%", range=rng)
    await reply(update, text)


@group_command("hosts", write=True)
async def on_hosts(update: Update, context: AppContext, call: GroupCall) -> None:
    msg = update.effective_message
    assert msg is not None
    if not call.args:
        await reply(update, await _hosts_text(context, call))
        return
    target = msg.reply_to_message.from_user if msg.reply_to_message else None
    if len(call.args) != 1 or call.args[0] not in ("add", "remove") or target is None:
        raise UsageError("usage_hosts")
    name = target.full_name
    if call.args[0] == "add":
        await context.repo.record_users(
            [(target.id, target.is_bot, target.full_name, target.username)]
        )
        await context.repo.set_manual_host(call.chat_id, target.id, True, utcnow())
        text = t(call.lang, "host_added", name=name)
    elif target.id in await context.repo.admin_hosts(call.chat_id):
        text = t(call.lang, "host_remove_admin", name=name)
    else:
        await context.repo.set_manual_host(call.chat_id, target.id, False, utcnow())
        text = t(call.lang, "host_removed", name=name)
    context.host_cache.forget(call.chat_id)
    await reply(update, text)


async def _hosts_text(context: AppContext, call: GroupCall) -> str:
    hosts = await context.hosts(call.chat_id)
    if not hosts:
        return t(call.lang, "hosts_none")
    names = await context.repo.user_names(hosts)
    lines = [t(call.lang, "hosts_title")]
    lines += [f"• {names.get(h) or h} ({h})" for h in sorted(hosts)]
    return "\n".join(lines)


@group_command("settings", write=True)
async def on_settings(update: Update, context: AppContext, call: GroupCall) -> None:
    if not call.args:
        s = call.settings
        await reply(
            update,
            "\n".join(
                [
                    t(call.lang, "settings_title"),
                    f"timezone: {s.timezone}",
                    f"language: {s.language}",
                    f"digest_time: {s.digest_time.strftime('%H:%M')}",
                    f"digest_to: {s.digest_to}",
                    t(call.lang, "usage_settings"),
                ]
            ),
        )
        return
    name, value = parse_setting(call.args)
    await context.repo.update_chat(call.chat_id, **{name: value})
    await schedule.schedule_chat(context.application, call.chat_id)
    lang = value if name == "language" else call.lang
    await reply(update, t(lang, "settings_saved", name=name, value=value))


@group_command("export", write=True)
async def on_export(update: Update, context: AppContext, call: GroupCall) -> None:
    """CSV files, always in a private chat with the admin, never in the group."""
    days = parse_days(call.args, "usage_export", default=30)
    files = await exporting.export_files(
        context.repo, context.config, call.chat_id, days, utcnow()
    )
    try:
        for name, data in files.items():
            await context.bot.send_document(call.user_id, InputFile(data, filename=name))
    except Forbidden:
        await reply(update, t(call.lang, "export_start_bot"))
        return
    await reply(update, t(call.lang, "export_private"))


async def on_forgetme(update: Update, context: AppContext) -> None:
    """Remove the caller's rows from every group; only in a private chat."""
    msg, chat, user = update.effective_message, update.effective_chat, update.effective_user
    if msg is None or chat is None or user is None:
        return
    lang = (
        "zh" if (user.language_code or "").startswith("zh") else context.config.defaults.language
    )
    if chat.type != "private":
        await reply(update, t(lang, "forgetme_private"))
        return
    removed = await context.repo.forget_user(user.id)
    context.host_cache.entries.clear()
    await reply(update, t(lang, "forgot", n=removed))


PURGE_CONFIRM_S = 300


async def on_purge(update: Update, context: AppContext) -> None:
    """Creator only, in two steps: /purge, then /purge confirm within 5 minutes."""
    msg, chat, user = update.effective_message, update.effective_chat, update.effective_user
    if msg is None or chat is None or user is None or chat.type not in ("group", "supergroup"):
        return
    lang = context.settings(chat.id).language
    try:
        member = await context.bot.get_chat_member(chat.id, user.id)
    except TelegramError:
        member = None
    if member is None or member.status != "creator":
        await reply(update, t(lang, "purge_creator_only"))
        return
    pending: dict[tuple[int, int], float] = context.bot_data.setdefault("purge_pending", {})
    asked = pending.get((chat.id, user.id))
    if context.args == ["confirm"] and asked and time.monotonic() - asked <= PURGE_CONFIRM_S:
        pending.pop((chat.id, user.id))
        await context.repo.purge_chat(chat.id)
        context.tracked_chats.discard(chat.id)
        context.host_cache.forget(chat.id)
        await reply(update, t(lang, "purged"))
        return
    pending[(chat.id, user.id)] = time.monotonic()
    await reply(update, t(lang, "purge_confirm"))
