"""Posts (without their text), edits and group-to-supergroup migration."""

from __future__ import annotations

import logging

from telegram import Message, Update

from bot.classify import Sender, is_question, sender_role
from bot.context import AppContext
from bot.events import Post, ReplyTarget, Role
from bot.tracking import start_tracking

log = logging.getLogger(__name__)


def sender_of(msg: Message) -> Sender:
    return Sender(
        user_id=msg.from_user.id if msg.from_user else None,
        user_is_bot=bool(msg.from_user and msg.from_user.is_bot),
        sender_chat_id=msg.sender_chat.id if msg.sender_chat else None,
        sender_chat_type=msg.sender_chat.type if msg.sender_chat else None,
        is_automatic_forward=bool(msg.is_automatic_forward),
    )


def is_service(msg: Message) -> bool:
    """Service messages are not messages (SPEC 4): nothing to reply to or answer."""
    return bool(
        msg.new_chat_members
        or msg.left_chat_member
        or msg.new_chat_title
        or msg.new_chat_photo
        or msg.delete_chat_photo
        or msg.group_chat_created
        or msg.supergroup_chat_created
        or msg.migrate_to_chat_id
        or msg.migrate_from_chat_id
        or msg.pinned_message
        or msg.forum_topic_created
        or msg.forum_topic_edited
        or msg.forum_topic_closed
        or msg.forum_topic_reopened
        or msg.general_forum_topic_hidden
        or msg.general_forum_topic_unhidden
        or msg.video_chat_started
    )


def topic_of(msg: Message) -> int | None:
    """The forum topic a message was sent in; None for the General topic and outside forums
    (a reply chain in an ordinary supergroup has a message_thread_id too, but no topic)."""
    return msg.message_thread_id if msg.is_topic_message else None


def replied_to(msg: Message) -> Message | None:
    """The message this one replies to with the reply button: in a forum, a message sent in
    a topic without it carries the topic's creation message, and that is no reply (SPEC 9)."""
    target = msg.reply_to_message
    if target is None or (
        msg.is_topic_message
        and target.forum_topic_created is not None
        and target.message_id == msg.message_thread_id
    ):
        return None
    return target


async def on_post(update: Update, context: AppContext) -> None:
    msg = update.message
    if msg is None or msg.chat.type not in ("group", "supergroup") or is_service(msg):
        return
    chat_id = msg.chat.id
    await start_tracking(context, msg.chat, msg.date)
    linked = await context.linked_chat(chat_id)
    hosts = await context.hosts(chat_id)
    settings = context.settings(chat_id)
    role = sender_role(sender_of(msg), chat_id, linked, hosts)
    if msg.from_user is not None and role in (Role.MEMBER, Role.BOT):
        u = msg.from_user
        await context.repo.record_users([(u.id, u.is_bot, u.full_name, u.username)])
    post = Post(
        chat_id=chat_id,
        message_id=msg.message_id,
        ts_utc=msg.date,
        role=role,
        sender_id=msg.from_user.id if msg.from_user and msg.sender_chat is None else None,
        sender_chat_id=msg.sender_chat.id if msg.sender_chat else None,
        # the text is looked at once, here, and never stored (SPEC 11)
        is_question=role == Role.MEMBER
        and is_question(msg.text or msg.caption, settings.question_markers),
        thread_id=topic_of(msg),
    )
    await context.repo.record_post(
        post, reply_target(msg, linked, hosts), settings.discussion_window_s
    )


def reply_target(msg: Message, linked: int | None, hosts: frozenset[int]) -> ReplyTarget | None:
    target = replied_to(msg)
    if target is None:
        return None
    if is_service(target):
        role = Role.OTHER
    else:
        role = sender_role(sender_of(target), msg.chat.id, linked, hosts)
    sender_id = target.from_user.id if target.from_user and target.sender_chat is None else None
    return ReplyTarget(target.message_id, target.date, role, sender_id)


async def on_migrate(update: Update, context: AppContext) -> None:
    """Group -> supergroup: all history moves to the new id (SPEC 2)."""
    msg = update.message
    if msg is None:
        return
    if msg.migrate_to_chat_id:
        old, new = msg.chat.id, msg.migrate_to_chat_id
    elif msg.migrate_from_chat_id:
        old, new = msg.migrate_from_chat_id, msg.chat.id
    else:
        return
    await context.repo.ensure_chat(old, msg.chat.title, "group")
    if await context.repo.migrate_chat(old, new):
        context.tracked_chats.discard(old)
        context.host_cache.forget(old)
        context.host_cache.forget(new)
        log.info("chat %s migrated to %s", old, new)
