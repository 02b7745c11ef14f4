"""Starting to track a group and keeping its admin list fresh (SPEC 2, 4, 9)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from telegram import Bot, Chat
from telegram.error import TelegramError

from bot.context import AppContext
from bot.events import HostChange
from storage.repo import Repo

log = logging.getLogger(__name__)


async def refresh_admins(
    bot: Bot, repo: Repo, chat_id: int, now: datetime
) -> tuple[set[int], set[int]] | None:
    """Store Telegram's admin list as host changes; (human ids, bot ids), None on error."""
    try:
        admins = await bot.get_chat_administrators(chat_id)
    except TelegramError as exc:
        log.warning("chat %s: cannot read administrators (%s)", chat_id, exc.__class__.__name__)
        return None
    await repo.record_users(
        (a.user.id, a.user.is_bot, a.user.first_name, a.user.username) for a in admins
    )
    humans = {a.user.id for a in admins if not a.user.is_bot}
    await repo.sync_admins(chat_id, humans, now)
    me = next((a for a in admins if a.user.id == bot.id), None)
    await repo.update_chat(chat_id, bot_is_admin=me is not None)
    return humans, {a.user.id for a in admins if a.user.is_bot}


async def start_tracking(context: AppContext, chat: Chat, ts_utc: datetime) -> None:
    """Anchor the baseline the first time a group is seen (SPEC 4, 9); later calls are cheap."""
    if chat.id in context.tracked_chats:
        return
    repo, bot = context.repo, context.bot
    await repo.ensure_chat(chat.id, chat.title, chat.type)
    info = await repo.chat(chat.id)
    if info is not None and info.tracking_start_utc is None:
        admins = await refresh_admins(bot, repo, chat.id, ts_utc)
        await _read_linked_chat(bot, repo, chat.id)
        try:
            count = await bot.get_chat_member_count(chat.id)
        except TelegramError:
            count = 0
        humans, bots = admins or (set(), set())
        # the count includes admins and bots; we know the admins, ourselves and bot admins
        baseline = max(0, count - len(humans) - len(bots | {bot.id}))
        await repo.start_tracking(chat.id, ts_utc, baseline)
        await repo.update_chat(chat.id, bot_status="member")
        context.host_cache.forget(chat.id)
        log.info("chat %s: tracking started, baseline %d members", chat.id, baseline)
    context.tracked_chats.add(chat.id)


async def _read_linked_chat(bot: Bot, repo: Repo, chat_id: int) -> None:
    try:
        full = await bot.get_chat(chat_id)
    except TelegramError:
        return
    if full.linked_chat_id:
        await repo.update_chat(chat_id, linked_chat_id=full.linked_chat_id)


def utcnow() -> datetime:
    return datetime.now(UTC)


async def note_host_change(context: AppContext, change: HostChange) -> None:
    if await context.repo.set_host(change):
        context.host_cache.forget(change.chat_id)
