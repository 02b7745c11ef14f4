"""Pure, Telegram-free rules: who sent a post (SPEC 2, 9) and what is a question (SPEC 4)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import lru_cache

from bot.events import ActivityMark, Level, Post, ReplyTarget, Role

# Telegram's placeholder senders: the anonymous-admin bot, the channel bot, "Telegram" itself.
GROUP_ANONYMOUS_BOT = 1087968824
CHANNEL_BOT = 136817688
TELEGRAM_SERVICE = 777000
PLACEHOLDER_SENDERS = frozenset({GROUP_ANONYMOUS_BOT, CHANNEL_BOT, TELEGRAM_SERVICE})

ADMIN_STATUSES = frozenset({"creator", "administrator"})
IN_GROUP_STATUSES = frozenset({"creator", "administrator", "member"})


@dataclass(frozen=True, slots=True)
class Sender:
    """What a message says about its sender, reduced to the facts the rules need."""

    user_id: int | None
    user_is_bot: bool = False
    sender_chat_id: int | None = None
    sender_chat_type: str | None = None
    is_automatic_forward: bool = False


def sender_role(
    sender: Sender, chat_id: int, linked_chat_id: int | None, hosts: frozenset[int] | set[int]
) -> Role:
    """Host, member, bot or other for a post in `chat_id`, given the hosts at that moment."""
    if sender.sender_chat_id is not None:  # SPEC 9: sender_chat rules come first
        if sender.sender_chat_id == chat_id or sender.is_automatic_forward:
            return Role.HOST
        if sender.sender_chat_type == "channel" and sender.sender_chat_id == linked_chat_id:
            return Role.HOST
        return Role.OTHER
    if sender.user_id is None or sender.user_id in PLACEHOLDER_SENDERS:
        return Role.OTHER
    if sender.user_is_bot:
        return Role.BOT
    if sender.user_id in hosts:
        return Role.HOST
    return Role.MEMBER


def is_member_status(status: str, is_member: bool | None = None) -> bool:
    """In the group for SPEC 2: member/admin/creator, or restricted with is_member."""
    if status == "restricted":
        return bool(is_member)
    return status in IN_GROUP_STATUSES


@lru_cache(maxsize=64)
def _marker_pattern(markers: tuple[str, ...]) -> re.Pattern[str] | None:
    parts = []
    for marker in markers:
        escaped = re.escape(marker.strip())
        # SPEC 9: Latin-letter markers match whole words; CJK markers match as substrings
        if re.fullmatch(r"[A-Za-z0-9' ]+", marker.strip()):
            parts.append(rf"(?<![A-Za-z0-9_]){escaped}(?![A-Za-z0-9_])")
        else:
            parts.append(escaped)
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


# every format (Cf) character, mapped to nothing for str.translate; all lie in planes 0-1
# and the tag block of plane 14
_FORMAT_CHARS = {
    cp: None
    for cp in (*range(0x20000), *range(0xE0000, 0xE1000))
    if unicodedata.category(chr(cp)) == "Cf"
}


def is_question(text: str | None, markers: Iterable[str]) -> bool:
    """A text (or caption) that ends with ?/？ or contains a configured marker."""
    if not text:
        return False
    # invisible format characters (zero-width spaces, RTL marks) do not hide a "?"
    stripped = text.translate(_FORMAT_CHARS).strip()
    if stripped.endswith(("?", "？")):
        return True
    pattern = _marker_pattern(tuple(m for m in markers if m.strip()))
    return bool(pattern and pattern.search(stripped))


def reply_marks(post: Post, target: ReplyTarget) -> list[ActivityMark]:
    """Activity a member's reply causes (SPEC 4): a response, or discussion at both ends."""
    if post.role != Role.MEMBER or post.sender_id is None:
        return []
    own = ActivityMark(post.chat_id, post.sender_id, Level.RESPONSE, post.ts_utc, post.message_id)
    if target.role == Role.HOST:
        return [own]
    if target.role == Role.MEMBER and target.sender_id not in (None, post.sender_id):
        assert target.sender_id is not None
        return [
            replace(own, level=Level.INTERACTION),
            ActivityMark(
                post.chat_id, target.sender_id, Level.INTERACTION, target.ts_utc, target.message_id
            ),
        ]
    return []  # replies to oneself, to bots, to service messages make no one active


def answer_marks(post: Post, recent: Iterable[Post], window_s: int) -> list[ActivityMark]:
    """Questions a non-reply member post answers without the reply button (SPEC 4, 9).

    `recent` are earlier posts of the chat in (ts, message_id) order, at least those of the
    last `window_s` seconds; only host posts and member questions matter, and only those of
    the post's own forum topic (SPEC 9: windows are per topic).
    """
    if post.role != Role.MEMBER or post.sender_id is None:
        return []
    open_questions: list[Post] = []
    for earlier in recent:
        if (
            earlier.thread_id != post.thread_id
            or (post.ts_utc - earlier.ts_utc).total_seconds() > window_s
        ):
            continue
        if earlier.role == Role.HOST:
            open_questions.clear()  # a host post closes the windows of its topic before it
        elif (
            earlier.role == Role.MEMBER
            and earlier.is_question
            and earlier.sender_id not in (None, post.sender_id)
        ):
            open_questions.append(earlier)
    if not open_questions:
        return []
    marks = [
        ActivityMark(post.chat_id, post.sender_id, Level.INTERACTION, post.ts_utc, post.message_id)
    ]
    for q in open_questions:
        assert q.sender_id is not None
        marks.append(
            ActivityMark(post.chat_id, q.sender_id, Level.INTERACTION, q.ts_utc, q.message_id)
        )
    return marks
