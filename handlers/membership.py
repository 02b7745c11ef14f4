"""Joins, leaves and admin changes: chat_member, my_chat_member and service messages."""

from __future__ import annotations

import logging

from telegram import ChatMember, ChatMemberUpdated, Message, Update

from bot import schedule
from bot.classify import ADMIN_STATUSES, is_member_status
from bot.context import AppContext
from bot.events import HostChange, MemberKind, MembershipEvent
from bot.tracking import note_host_change, refresh_admins, start_tracking

log = logging.getLogger(__name__)


def _in_group(member: ChatMember) -> bool:
    return is_member_status(member.status, getattr(member, "is_member", None))


def status_change(cmu: ChatMemberUpdated) -> tuple[bool, bool, bool, bool]:
    """(was in group, is in group, was admin, is admin) — PTB's extract_status_change idea."""
    old, new = cmu.old_chat_member, cmu.new_chat_member
    return (
        _in_group(old),
        _in_group(new),
        old.status in ADMIN_STATUSES,
        new.status in ADMIN_STATUSES,
    )


async def on_chat_member(update: Update, context: AppContext) -> None:
    cmu = update.chat_member
    if cmu is None or cmu.chat.type not in ("group", "supergroup"):
        return
    chat_id, user = cmu.chat.id, cmu.new_chat_member.user
    await start_tracking(context, cmu.chat, cmu.date)
    await context.repo.record_users([(user.id, user.is_bot, user.full_name, user.username)])
    was_in, is_in, was_admin, is_admin = status_change(cmu)
    seq = update.update_id
    # host status first: a user who joins as an admin is a host at their join (SPEC 2)
    if was_admin != is_admin and not user.is_bot:
        await note_host_change(
            context, HostChange(chat_id, user.id, cmu.date, is_admin, seq, "chat_member")
        )
    if was_in != is_in:
        link = cmu.invite_link
        await context.repo.record_membership(
            MembershipEvent(
                chat_id,
                user.id,
                MemberKind.JOIN if is_in else MemberKind.LEAVE,
                cmu.date,
                seq,
                "chat_member",
                invite_link=(link.name or link.invite_link) if link is not None else None,
            )
        )


async def on_my_chat_member(update: Update, context: AppContext) -> None:
    """The bot itself was added, promoted or removed."""
    cmu = update.my_chat_member
    if cmu is None or cmu.chat.type not in ("group", "supergroup"):
        return
    _, is_in, _, is_admin = status_change(cmu)
    chat = cmu.chat
    await context.repo.ensure_chat(chat.id, chat.title, chat.type)
    if is_in:
        admins_read = await start_tracking(context, chat, cmu.date)
        await context.repo.update_chat(
            chat.id, bot_status=cmu.new_chat_member.status, bot_is_admin=is_admin
        )
        if is_admin and not admins_read:
            await refresh_admins(context.bot, context.repo, chat.id, cmu.date)
            context.host_cache.forget(chat.id)
        await schedule.schedule_chat(context.application, chat.id)
        log.info("chat %s: bot is %s", chat.id, cmu.new_chat_member.status)
    else:
        await context.repo.update_chat(chat.id, bot_status="left", bot_is_admin=False)
        context.tracked_chats.discard(chat.id)
        schedule.unschedule_chat(context.application, chat.id)
        log.info("chat %s: bot was removed", chat.id)


async def on_service_members(update: Update, context: AppContext) -> None:
    """new_chat_members / left_chat_member: the second source of joins and leaves."""
    msg: Message | None = update.message
    if msg is None:
        return
    await start_tracking(context, msg.chat, msg.date)
    me = context.bot.id
    joined = [u for u in msg.new_chat_members or () if u.id != me]
    left = msg.left_chat_member if msg.left_chat_member and msg.left_chat_member.id != me else None
    people = [*joined, *([left] if left else [])]
    await context.repo.record_users((u.id, u.is_bot, u.full_name, u.username) for u in people)
    for user in joined:
        await context.repo.record_membership(
            MembershipEvent(
                msg.chat.id, user.id, MemberKind.JOIN, msg.date, msg.message_id, "service"
            )
        )
    if left is not None:
        await context.repo.record_membership(
            MembershipEvent(
                msg.chat.id, left.id, MemberKind.LEAVE, msg.date, msg.message_id, "service"
            )
        )
