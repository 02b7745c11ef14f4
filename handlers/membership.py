"""Joins, leaves and admin changes: chat_member, my_chat_member and service messages."""

from __future__ import annotations

import logging

from telegram import ChatMember, ChatMemberUpdated, Message, Update, User

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
    was_in, is_in, was_admin, is_admin = status_change(cmu)
    source, inviter = join_source(cmu) if is_in and not was_in else (None, None)
    # the inviter too: whether they are a bot decides whether the join is a referral
    people = [user, *([inviter] if inviter is not None else [])]
    await context.repo.record_users((u.id, u.is_bot, u.full_name, u.username) for u in people)
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
                join_source=source,
                inviter_id=inviter.id if inviter is not None else None,
            )
        )


def join_source(cmu: ChatMemberUpdated) -> tuple[str, User | None]:
    """Source and inviter of a join seen as a chat_member update (SPEC 12).

    `from` is who performed the change: the newcomer for a link or folder join, whoever
    added them, or the admin who approved their join request."""
    newcomer, performer, link = cmu.new_chat_member.user, cmu.from_user, cmu.invite_link
    inviter = performer if performer.id != newcomer.id else None
    if inviter is None and link is not None:
        inviter = link.creator
    if link is not None:
        return f"link:{link.name or link.invite_link}", inviter
    if cmu.via_join_request:
        return "request", inviter
    return ("added" if inviter is not None else "direct"), inviter


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
    sender = msg.from_user.id if msg.from_user is not None else None
    if joined and msg.from_user is not None and sender not in {u.id for u in joined}:
        people.append(msg.from_user)  # the adder: a bot's adds are no referrals
    await context.repo.record_users((u.id, u.is_bot, u.full_name, u.username) for u in people)
    for user in joined:
        source, inviter = service_join_source(sender, user.id)
        await context.repo.record_membership(
            MembershipEvent(
                msg.chat.id,
                user.id,
                MemberKind.JOIN,
                msg.date,
                msg.message_id,
                "service",
                join_source=source,
                inviter_id=inviter,
            )
        )
    if left is not None:
        await context.repo.record_membership(
            MembershipEvent(
                msg.chat.id, left.id, MemberKind.LEAVE, msg.date, msg.message_id, "service"
            )
        )


def service_join_source(sender: int | None, newcomer: int) -> tuple[str, int | None]:
    """A join seen only as a `new_chat_members` message has no link and no request flag:
    `added` by its sender when that is someone else, else `direct` (SPEC 12)."""
    if sender is not None and sender != newcomer:
        return "added", sender
    return "direct", None
