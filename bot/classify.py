"""Pure, Telegram-free rules: who sent a post (SPEC 2, 9) and what is a question (SPEC 4)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from bot.events import Role

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


def is_question(text: str | None, markers: Iterable[str]) -> bool:
    """A text (or caption) that ends with ?/？ or contains a configured marker."""
    if not text:
        return False
    stripped = text.strip()
    if stripped.endswith(("?", "？")):
        return True
    pattern = _marker_pattern(tuple(m for m in markers if m.strip()))
    return bool(pattern and pattern.search(stripped))
