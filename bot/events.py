"""Our own event types: Telegram objects are turned into these once, at the edge.

All times are timezone-aware UTC datetimes; `seq` orders events that share a second
(the update_id for chat_member updates, the message_id for messages).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class MemberKind(StrEnum):
    JOIN = "join"
    LEAVE = "leave"


class Role(StrEnum):
    """Who sent a post, decided at the time it was sent (SPEC 2, 9)."""

    HOST = "host"  # creator/admin/configured host, the group itself, the linked channel
    MEMBER = "member"  # any other human user
    BOT = "bot"  # bots, including opsbot itself
    OTHER = "other"  # a channel other than the linked one; placeholder senders


class Level(StrEnum):
    RESPONSE = "response"
    INTERACTION = "interaction"


@dataclass(frozen=True, slots=True)
class MembershipEvent:
    """A join or a leave of one user in one group."""

    chat_id: int
    user_id: int
    kind: MemberKind
    ts_utc: datetime
    seq: int = 0
    source: str = "chat_member"  # chat_member | service | import
    invite_link: str | None = None
    # where a join came from (SPEC 12): link:<name or url> | link | request | added | direct
    join_source: str | None = None
    inviter_id: int | None = None  # who added the newcomer, else the link's creator


@dataclass(frozen=True, slots=True)
class HostChange:
    """A user became a host (is_host=True) or stopped being one, at ts_utc."""

    chat_id: int
    user_id: int
    ts_utc: datetime
    is_host: bool
    seq: int = 0
    source: str = "admins"  # admins | chat_member | config | command | import


@dataclass(frozen=True, slots=True)
class ActivityMark:
    """`user_id` was active at `level` through their own message sent at `ts_utc`."""

    chat_id: int
    user_id: int
    level: Level
    ts_utc: datetime
    message_id: int


@dataclass(frozen=True, slots=True)
class Post:
    """A non-service message, without its text (SPEC 11)."""

    chat_id: int
    message_id: int
    ts_utc: datetime
    role: Role
    sender_id: int | None  # the user, or None for posts sent as a chat
    sender_chat_id: int | None = None
    reply_to_message_id: int | None = None
    is_question: bool = False


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """The message a post replies to, as the update shows it (used when it is not stored)."""

    message_id: int
    ts_utc: datetime
    role: Role
    sender_id: int | None
