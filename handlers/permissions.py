"""Who may run a command: checked against Telegram (getChatMember), cached at most 5 min."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import TelegramError

from bot import service
from bot.classify import ADMIN_STATUSES
from bot.config import GroupSettings
from bot.context import HOST_CACHE_TTL_S, AppContext
from bot.i18n import t
from bot.parse import UsageError
from handlers.replies import reply, usage_text


@dataclass(frozen=True, slots=True)
class GroupCall:
    """A command call resolved to its group, its settings and the caller."""

    chat_id: int
    settings: GroupSettings
    user_id: int
    args: list[str]
    title: str = ""

    @property
    def lang(self) -> str:
        return self.settings.language


async def is_admin(context: AppContext, chat_id: int, user_id: int) -> bool:
    cache: dict[tuple[int, int], tuple[float, bool]] = context.bot_data.setdefault(
        "admin_checks", {}
    )
    return await admin_now(context.bot, cache, chat_id, user_id)


async def admin_now(
    bot: Bot, cache: dict[tuple[int, int], tuple[float, bool]], chat_id: int, user_id: int
) -> bool:
    """getChatMember now, or its answer of at most 5 minutes ago (the dashboard uses it too)."""
    hit = cache.get((chat_id, user_id))
    if hit is not None and time.monotonic() - hit[0] <= HOST_CACHE_TTL_S:
        return hit[1]
    try:
        member = await bot.get_chat_member(chat_id, user_id)
        result = member.status in ADMIN_STATUSES
    except TelegramError:
        result = False
    cache[(chat_id, user_id)] = (time.monotonic(), result)
    return result


Handler = Callable[[Update, AppContext, GroupCall], Awaitable[None]]
Command = Callable[[Update, AppContext], Coroutine[Any, Any, None]]
# name -> (command body, is a write): what the private-chat group picker can run
PICKABLE: dict[str, tuple[Handler, bool]] = {}
PICK_PREFIX = "pick"


def group_command(name: str, *, write: bool) -> Callable[[Handler], Command]:
    """Resolve the group, check the caller's rights, turn a UsageError into its usage line.

    Reads are for admins, or everyone with `public_commands = true`; writes for admins only.
    In a private chat the caller first picks one of the groups they are an admin of now.
    """

    def decorate(fn: Handler) -> Command:
        PICKABLE[name] = (fn, write)

        @functools.wraps(fn)
        async def wrapper(update: Update, context: AppContext) -> None:
            msg, chat, user = (
                update.effective_message,
                update.effective_chat,
                update.effective_user,
            )
            if msg is None or chat is None or user is None:
                return
            args = list(context.args or [])
            if chat.type == "private":
                await show_picker(update, context, name, args)
                return
            if chat.type not in ("group", "supergroup"):
                return
            anonymous_admin = msg.sender_chat is not None and msg.sender_chat.id == chat.id
            await run_for_group(
                update, context, name, chat.id, user.id, args, trusted=anonymous_admin
            )

        return wrapper

    return decorate


async def run_for_group(
    update: Update,
    context: AppContext,
    name: str,
    chat_id: int,
    user_id: int,
    args: list[str],
    *,
    trusted: bool = False,
) -> None:
    """Check rights against Telegram now, then run the command body for that group."""
    fn, write = PICKABLE[name]
    settings = await service.group_settings(context.repo, context.config, chat_id)
    allowed = trusted or (not write and settings.public_commands)
    if not allowed:
        allowed = await is_admin(context, chat_id, user_id)
    if not allowed:
        await reply(update, t(settings.language, "admins_only"))
        return
    info = await context.repo.chat(chat_id)
    title = (info.title if info else None) or str(chat_id)
    try:
        await fn(update, context, GroupCall(chat_id, settings, user_id, args, title))
    except UsageError as exc:
        await reply(update, usage_text(exc, settings.language))


async def show_picker(update: Update, context: AppContext, name: str, args: list[str]) -> None:
    """An inline keyboard of the groups where this user is an admin now, and no others."""
    user = update.effective_user
    assert user is not None
    lang = (
        "zh" if (user.language_code or "").startswith("zh") else context.config.defaults.language
    )
    buttons = []
    for chat_id in await context.repo.chat_ids():
        if await is_admin(context, chat_id, user.id):
            info = await context.repo.chat(chat_id)
            data = _callback_data(f"{PICK_PREFIX}:{name}:{chat_id}:{' '.join(args)}")
            buttons.append(
                [InlineKeyboardButton((info and info.title) or str(chat_id), callback_data=data)]
            )
    if not buttons:
        await reply(update, t(lang, "no_groups"))
        return
    await reply(update, t(lang, "pick_group"), markup=InlineKeyboardMarkup(buttons))


def _callback_data(text: str) -> str:
    """Telegram takes 1-64 bytes of callback data: cut by bytes, never inside a character."""
    return text.encode()[:64].decode(errors="ignore")


async def on_pick(update: Update, context: AppContext) -> None:
    """A button of the picker: the data is only a request; rights are checked again here."""
    query = update.callback_query
    if query is None or query.data is None:
        return
    await query.answer()
    try:
        _, name, chat_id, arg_text = query.data.split(":", 3)
        chat = int(chat_id)
    except ValueError:
        return
    if name not in PICKABLE:
        return
    await run_for_group(update, context, name, chat, query.from_user.id, arg_text.split())
