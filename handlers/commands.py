"""Commands anyone can use: /start and /help with the set-up checklist."""

from __future__ import annotations

from telegram import Update

from bot.context import AppContext
from bot.i18n import t


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
    privacy_off = bool(context.bot_data.get("can_read_all_group_messages"))
    lines = [t(lang, "check_privacy_ok" if privacy_off else "check_privacy_bad")]
    if chat.type in ("group", "supergroup"):
        info = await context.repo.chat(chat.id)
        admin = bool(info and info.bot_is_admin)
        lines.append(t(lang, "check_admin_ok" if admin else "check_admin_bad"))
    else:
        lines.append(t(lang, "check_admin_private"))
    await msg.reply_text(t(lang, "start", checklist="\n".join(lines)))
