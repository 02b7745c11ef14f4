"""Every reply of a command goes through here: cut to Telegram's limits, tables monospace."""

from __future__ import annotations

import html

from telegram import Bot, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode

from bot.chat_text import MAX_CAPTION, fit, quote
from bot.i18n import t
from bot.parse import UsageError


async def reply(
    update: Update, text: str, *, pre: bool = False, markup: InlineKeyboardMarkup | None = None
) -> None:
    """Answer the message; `pre`: a monospace block, so tables stay aligned on a phone.
    The text is cut before it is escaped: Telegram counts it after parsing the HTML."""
    msg = update.effective_message
    if msg is None:
        return
    body = fit(text)
    if pre:
        await msg.reply_text(f"<pre>{html.escape(body)}</pre>", parse_mode=ParseMode.HTML)
    else:
        await msg.reply_text(body, reply_markup=markup)


async def reply_photo(update: Update, png: bytes, caption: str) -> None:
    msg = update.effective_message
    if msg is not None:
        await msg.reply_photo(png, caption=fit(caption, MAX_CAPTION))


async def send_html(bot: Bot, chat_id: int, text: str) -> None:
    """A message of our own HTML (already fitted: bot.chat_text.fit_lines) to a chat, such
    as an admin's private chat; Forbidden when the user never started the bot."""
    await bot.send_message(chat_id, text, parse_mode=ParseMode.HTML)


def usage_text(exc: UsageError, lang: str) -> str:
    """What was wrong, with the input quoted short, then the usage line."""
    usage = t(lang, exc.key)
    if not exc.reason:
        return usage
    return f"{t(lang, exc.reason, input=quote(exc.given), **exc.values)}\n{usage}"
