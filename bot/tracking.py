"""Starting to track a group and keeping its admin list fresh (SPEC 2, 4, 9)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from telegram import Bot, Chat, ChatMember
from telegram.error import TelegramError

from bot.classify import is_member_status
from bot.context import AppContext
from bot.events import HostChange
from storage.repo import Repo

log = logging.getLogger(__name__)


async def fetch_admins(bot: Bot, chat_id: int) -> tuple[ChatMember, ...] | None:
    """Telegram's admin list of a group, bot admins included (without `return_bots`
    Telegram leaves out every bot but the caller); None (logged) when it cannot be read."""
    try:
        return await bot.get_chat_administrators(chat_id, return_bots=True)
    except TelegramError as exc:
        log.warning("chat %s: cannot read administrators (%s)", chat_id, exc.__class__.__name__)
        return None


async def store_admins(
    bot: Bot, repo: Repo, chat_id: int, admins: Sequence[ChatMember], now: datetime
) -> tuple[set[int], set[int]]:
    """Store an admin list as host changes; (human ids, bot ids)."""
    await repo.record_users(
        (a.user.id, a.user.is_bot, a.user.full_name, a.user.username) for a in admins
    )
    humans = {a.user.id for a in admins if not a.user.is_bot}
    await repo.sync_admins(chat_id, humans, now)
    me = next((a for a in admins if a.user.id == bot.id), None)
    await repo.update_chat(chat_id, bot_is_admin=me is not None)
    return humans, {a.user.id for a in admins if a.user.is_bot}


async def refresh_admins(
    bot: Bot, repo: Repo, chat_id: int, now: datetime
) -> tuple[set[int], set[int]] | None:
    """Store Telegram's admin list as host changes; (human ids, bot ids), None on error."""
    admins = await fetch_admins(bot, chat_id)
    return None if admins is None else await store_admins(bot, repo, chat_id, admins, now)


async def refresh_all_admins(bot: Bot, repo: Repo, now: datetime, parallel: int = 16) -> None:
    """Every tracked group's admin list, as at start-up: read from Telegram `parallel` at a
    time (1,000 groups one after another take minutes over a real network), stored in one
    transaction; a group where the bot is no admin is named in the log."""
    chat_ids = await repo.chat_ids()
    gate = asyncio.Semaphore(parallel)

    async def fetch(chat_id: int) -> tuple[ChatMember, ...] | None:
        async with gate:
            return await fetch_admins(bot, chat_id)

    lists = await asyncio.gather(*(fetch(chat_id) for chat_id in chat_ids))
    async with repo.batch():
        for chat_id, admins in zip(chat_ids, lists, strict=True):
            if admins is None:
                continue
            _, bots = await store_admins(bot, repo, chat_id, admins, now)
            if bot.id not in bots:
                log.warning(
                    "chat %s: the bot is not an admin; joins and leaves are not sent", chat_id
                )


async def not_members(
    bot: Bot, repo: Repo, chat_id: int, config_hosts: Iterable[int], now: datetime
) -> set[int]:
    """Whom getChatMemberCount counts who is no member (SPEC 4): the bot itself, the
    administrators read with `return_bots` (bot administrators included; stored as host
    changes on the way, the stored ones when Telegram does not answer), and the configured
    or /hosts add hosts whom getChatMember shows in the group."""
    admins = await refresh_admins(bot, repo, chat_id, now)
    humans, bots = admins or (await repo.admin_hosts(chat_id), set())
    known = humans | bots | {bot.id}
    others = set(config_hosts) | await repo.manual_hosts(chat_id)
    return known | await hosts_in_group(bot, chat_id, others - known)


def baseline_count(member_count: int, not_members: Iterable[int]) -> int:
    """The members before tracking (SPEC 4): getChatMemberCount counts everyone, so the
    people it counts who are no members are taken off: the bot itself, the administrators
    (bot administrators included) and the other hosts who are in the group."""
    return max(0, member_count - len(set(not_members)))


async def start_tracking(context: AppContext, chat: Chat, ts_utc: datetime) -> bool:
    """Anchor the baseline the first time a group is seen (SPEC 4, 9); later calls are cheap.
    True if tracking started now (the admin list was just read and stored)."""
    if chat.id in context.tracked_chats:
        return False
    started = False
    repo, bot = context.repo, context.bot
    await repo.ensure_chat(chat.id, chat.title, chat.type)
    info = await repo.chat(chat.id)
    if info is not None and info.tracking_start_utc is None:
        known = await not_members(bot, repo, chat.id, context.settings(chat.id).hosts, ts_utc)
        await _read_linked_chat(bot, repo, chat.id)
        try:
            count = await bot.get_chat_member_count(chat.id)
        except TelegramError:
            count = 0
        baseline = baseline_count(count, known)
        await repo.start_tracking(chat.id, ts_utc, baseline)
        await repo.update_chat(chat.id, bot_status="member")
        context.host_cache.forget(chat.id)
        log.info("chat %s: tracking started, baseline %d members", chat.id, baseline)
        started = True
    context.tracked_chats.add(chat.id)
    return started


async def in_group(bot: Bot, chat_id: int, user_id: int) -> bool:
    """Whether getChatMember shows the user in the group (False when it cannot be read)."""
    try:
        found = await bot.get_chat_member(chat_id, user_id)
    except TelegramError:
        return False
    return is_member_status(found.status, getattr(found, "is_member", None))


async def hosts_in_group(bot: Bot, chat_id: int, user_ids: Iterable[int]) -> set[int]:
    """The users (hosts that are no admins) whom getChatMember shows in the group."""
    ids = sorted(user_ids)
    found = await asyncio.gather(*(in_group(bot, chat_id, u) for u in ids))
    return {u for u, inside in zip(ids, found, strict=True) if inside}


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
