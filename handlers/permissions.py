"""Who may run a command: checked against Telegram (getChatMember), cached at most 5 min."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from telegram import Update
from telegram.error import TelegramError

from bot import service
from bot.classify import ADMIN_STATUSES
from bot.config import GroupSettings
from bot.context import HOST_CACHE_TTL_S, AppContext
from bot.i18n import t
from bot.parse import UsageError


@dataclass(frozen=True, slots=True)
class GroupCall:
    """A command call resolved to its group, its settings and the caller."""

    chat_id: int
    settings: GroupSettings
    user_id: int
    args: list[str]

    @property
    def lang(self) -> str:
        return self.settings.language


async def is_admin(context: AppContext, chat_id: int, user_id: int) -> bool:
    cache: dict[tuple[int, int], tuple[float, bool]] = context.bot_data.setdefault(
        "admin_checks", {}
    )
    hit = cache.get((chat_id, user_id))
    if hit is not None and time.monotonic() - hit[0] <= HOST_CACHE_TTL_S:
        return hit[1]
    try:
        member = await context.bot.get_chat_member(chat_id, user_id)
        result = member.status in ADMIN_STATUSES
    except TelegramError:
        result = False
    cache[(chat_id, user_id)] = (time.monotonic(), result)
    return result


Handler = Callable[[Update, AppContext, GroupCall], Awaitable[None]]


Command = Callable[[Update, AppContext], Coroutine[Any, Any, None]]


def group_command(*, write: bool) -> Callable[[Handler], Command]:
    """Resolve the group, check the caller's rights, turn a UsageError into its usage line.

    Reads are for admins, or everyone with `public_commands = true`; writes for admins only.
    """

    def decorate(fn: Handler) -> Command:
        @functools.wraps(fn)
        async def wrapper(update: Update, context: AppContext) -> None:
            msg, chat, user = (
                update.effective_message,
                update.effective_chat,
                update.effective_user,
            )
            if msg is None or chat is None:
                return
            if chat.type not in ("group", "supergroup"):
                lang = context.config.defaults.language
                await msg.reply_text(t(lang, "group_only"))
                return
            settings = await service.group_settings(context.repo, context.config, chat.id)
            anonymous_admin = msg.sender_chat is not None and msg.sender_chat.id == chat.id
            user_id = user.id if user else 0
            allowed = anonymous_admin or (not write and settings.public_commands)
            if not allowed:
                allowed = await is_admin(context, chat.id, user_id)
            if not allowed:
                await msg.reply_text(t(settings.language, "admins_only"))
                return
            call = GroupCall(chat.id, settings, user_id, list(context.args or []))
            try:
                await fn(update, context, call)
            except UsageError as exc:
                text = t(settings.language, exc.key)
                await msg.reply_text(f"{exc.detail}\n{text}" if exc.detail else text)

        return wrapper

    return decorate
