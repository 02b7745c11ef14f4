"""Bot API JSON builders for tests (plain dicts, shaped as botapi_subset.json says)."""

from __future__ import annotations

from typing import Any

ADMIN_RIGHTS = dict.fromkeys(
    (
        "can_be_edited",
        "is_anonymous",
        "can_manage_chat",
        "can_delete_messages",
        "can_manage_video_chats",
        "can_restrict_members",
        "can_promote_members",
        "can_change_info",
        "can_invite_users",
        "can_post_stories",
        "can_edit_stories",
        "can_delete_stories",
    ),
    False,
)
RESTRICTED_RIGHTS = dict.fromkeys(
    (
        "can_send_messages",
        "can_send_audios",
        "can_send_documents",
        "can_send_photos",
        "can_send_videos",
        "can_send_video_notes",
        "can_send_voice_notes",
        "can_send_polls",
        "can_send_other_messages",
        "can_add_web_page_previews",
        "can_react_to_messages",
        "can_edit_tag",
        "can_change_info",
        "can_invite_users",
        "can_pin_messages",
        "can_manage_topics",
    ),
    False,
)


def user(uid: int, name: str | None = None, is_bot: bool = False) -> dict[str, Any]:
    return {"id": uid, "is_bot": is_bot, "first_name": name or f"User{uid}"}


def group(chat_id: int, title: str = "Camp", type_: str = "supergroup") -> dict[str, Any]:
    return {"id": chat_id, "type": type_, "title": title}


def forum(chat_id: int, title: str = "Camp") -> dict[str, Any]:
    """A forum supergroup (topics switched on)."""
    return group(chat_id, title) | {"is_forum": True}


def channel(chat_id: int, title: str = "Camp channel") -> dict[str, Any]:
    return {"id": chat_id, "type": "channel", "title": title}


def member(u: dict[str, Any], status: str, is_member: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"status": status, "user": u}
    if status == "administrator":
        out |= ADMIN_RIGHTS
    elif status == "creator":
        out["is_anonymous"] = False
    elif status == "restricted":
        out |= RESTRICTED_RIGHTS | {"is_member": is_member, "until_date": 0}
    elif status == "kicked":
        out["until_date"] = 0
    return out


def invite_link(url: str, creator: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    out = {
        "invite_link": url,
        "creator": creator,
        "creates_join_request": False,
        "is_primary": False,
        "is_revoked": False,
    }
    if name:
        out["name"] = name
    return out


def chat_member(
    chat: dict[str, Any],
    actor: dict[str, Any],
    date: int,
    old: dict[str, Any],
    new: dict[str, Any],
    link: dict[str, Any] | None = None,
    *,
    mine: bool = False,
) -> dict[str, Any]:
    cmu: dict[str, Any] = {
        "chat": chat,
        "from": actor,
        "date": date,
        "old_chat_member": old,
        "new_chat_member": new,
    }
    if link:
        cmu["invite_link"] = link
    return {"my_chat_member" if mine else "chat_member": cmu}


def bot_added(
    chat: dict[str, Any], by: dict[str, Any], date: int, bot: dict[str, Any]
) -> dict[str, Any]:
    """The my_chat_member update of `by` adding the bot to `chat` as an administrator."""
    return chat_member(
        chat, by, date, member(bot, "left"), member(bot, "administrator"), mine=True
    )


def message(
    chat: dict[str, Any],
    mid: int,
    date: int,
    sender: dict[str, Any] | None = None,
    text: str | None = None,
    *,
    reply_to: dict[str, Any] | None = None,
    topic: dict[str, Any] | None = None,
    sender_chat: dict[str, Any] | None = None,
    edited: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """A message as Telegram delivers it. `topic`: the forum topic's creation message (see
    topic_created); a message in a topic carries the topic's id and `is_topic_message`, and
    without an explicit `reply_to` the creation message is its `reply_to_message`. A reply
    in a supergroup outside forum topics carries the id of its reply chain's first message
    as `message_thread_id`, without `is_topic_message`."""
    msg: dict[str, Any] = {"message_id": mid, "date": date, "chat": chat}
    if topic is not None:
        msg["message_thread_id"] = topic["message_id"]
        msg["is_topic_message"] = True
        reply_to = reply_to or topic
    elif reply_to is not None and chat["type"] == "supergroup":
        msg["message_thread_id"] = reply_to.get("message_thread_id", reply_to["message_id"])
    if sender is not None:
        msg["from"] = sender
    if sender_chat is not None:
        msg["sender_chat"] = sender_chat
    if text is not None:
        msg["text"] = text
    if reply_to is not None:
        msg["reply_to_message"] = {k: v for k, v in reply_to.items() if k != "reply_to_message"}
    if edited:
        msg["edit_date"] = date + 30
    msg.update(extra)
    return {"edited_message" if edited else "message": msg}


def topic_created(
    chat: dict[str, Any], mid: int, date: int, sender: dict[str, Any], name: str = "Topic"
) -> dict[str, Any]:
    """The service message that opens a forum topic; its id is the topic's id."""
    return message(
        chat,
        mid,
        date,
        sender,
        message_thread_id=mid,
        is_topic_message=True,
        forum_topic_created={"name": name, "icon_color": 0x6FB9F0},
    )
