"""/dashboard and /start dash_<chat>: the buttons that open the dashboard (SPEC 7's rights).

Telegram allows `web_app` buttons only in private chats, so in a group /dashboard answers
with a deep link into the private chat, where the Mini App button and a one-time login link
for a desktop browser are sent.
"""

from __future__ import annotations

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Update,
    WebAppInfo,
)

from bot import service
from bot.config import Config
from bot.context import AppContext
from bot.i18n import t
from bot.web.app import login_link
from handlers.commands import language_for
from handlers.permissions import is_admin

DEEP_LINK_PREFIX = "dash_"


def dashboard_url(config: Config) -> str | None:
    """Where the dashboard is reached from outside, if it is set up."""
    if config.dashboard.public_url:
        return config.dashboard.public_url
    return config.dashboard.base_url if config.dashboard.enabled else None


def mini_app_url(base_url: str, chat_id: int | None) -> str | None:
    """Telegram opens only HTTPS Mini Apps."""
    if not base_url.startswith("https://"):
        return None
    return f"{base_url}/app" + (f"?chat={chat_id}" if chat_id is not None else "")


async def on_dashboard(update: Update, context: AppContext) -> None:
    msg, chat, user = update.effective_message, update.effective_chat, update.effective_user
    if msg is None or chat is None or user is None:
        return
    if chat.type == "private":
        await send_private_links(update, context, None, language_for(update, context))
        return
    if chat.type not in ("group", "supergroup"):
        return
    settings = await service.group_settings(context.repo, context.config, chat.id)
    lang = settings.language
    anonymous_admin = msg.sender_chat is not None and msg.sender_chat.id == chat.id
    if not (anonymous_admin or await is_admin(context, chat.id, user.id)):
        await msg.reply_text(t(lang, "admins_only"))
        return
    if dashboard_url(context.config) is None:
        await msg.reply_text(t(lang, "dashboard_off"))
        return
    deep_link = f"https://t.me/{context.bot.username}?start={DEEP_LINK_PREFIX}{chat.id}"
    button = InlineKeyboardButton(t(lang, "dashboard_button"), url=deep_link)
    await msg.reply_text(t(lang, "dashboard_group"), reply_markup=InlineKeyboardMarkup([[button]]))


async def on_start_dashboard(update: Update, context: AppContext) -> None:
    """`/start dash_<chat>` in the private chat: the group's Mini App and login link."""
    msg, user = update.effective_message, update.effective_user
    if msg is None or user is None:
        return
    lang = language_for(update, context)
    arg = (context.args or [""])[0].removeprefix(DEEP_LINK_PREFIX)
    try:
        chat_id = int(arg)
    except ValueError:
        await msg.reply_text(t(lang, "usage_dashboard"))
        return
    if await context.repo.chat(chat_id) is None or not await is_admin(context, chat_id, user.id):
        await msg.reply_text(t(lang, "admins_only"))
        return
    lang = (await service.group_settings(context.repo, context.config, chat_id)).language
    await send_private_links(update, context, chat_id, lang)


async def send_private_links(
    update: Update, context: AppContext, chat_id: int | None, lang: str
) -> None:
    msg, user = update.effective_message, update.effective_user
    assert msg is not None
    assert user is not None
    base = dashboard_url(context.config)
    if base is None:
        await msg.reply_text(t(lang, "dashboard_off"))
        return
    info = await context.repo.chat(chat_id) if chat_id is not None else None
    title = (info and info.title) or (str(chat_id) if chat_id else t(lang, "dashboard_all_groups"))
    link = await login_link(context.repo, base, user.id, chat_id)
    app_url = mini_app_url(base, chat_id)
    markup = (
        InlineKeyboardMarkup(
            [[InlineKeyboardButton(t(lang, "dashboard_button"), web_app=WebAppInfo(app_url))]]
        )
        if app_url
        else None
    )
    # no preview: a preview fetcher opening the link would use it up
    await msg.reply_text(
        t(lang, "dashboard_private", title=title, link=link),
        reply_markup=markup,
        link_preview_options=LinkPreviewOptions(is_disabled=True),
    )
