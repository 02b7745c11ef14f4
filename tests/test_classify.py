"""Pure classification rules (SPEC 2, 4, 9): roles, questions, reply and answer activity."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.classify import (
    CHANNEL_BOT,
    GROUP_ANONYMOUS_BOT,
    TELEGRAM_SERVICE,
    Sender,
    answer_marks,
    is_member_status,
    is_question,
    reply_marks,
    sender_role,
)
from bot.config import DEFAULT_QUESTION_MARKERS
from bot.events import Level, Post, ReplyTarget, Role

CHAT, LINKED = -100500, -100900
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def role(sender: Sender, hosts: frozenset[int] = frozenset({1})) -> Role:
    return sender_role(sender, CHAT, LINKED, hosts)


def test_roles_follow_sender_chat_rules_first() -> None:
    assert role(Sender(GROUP_ANONYMOUS_BOT, True, CHAT, "supergroup")) == Role.HOST
    assert role(Sender(CHANNEL_BOT, True, LINKED, "channel")) == Role.HOST
    assert role(Sender(TELEGRAM_SERVICE, False, LINKED, "channel", True)) == Role.HOST
    assert role(Sender(CHANNEL_BOT, True, -100777, "channel")) == Role.OTHER
    assert role(Sender(TELEGRAM_SERVICE)) == Role.OTHER


def test_roles_of_users() -> None:
    assert role(Sender(1)) == Role.HOST
    assert role(Sender(2)) == Role.MEMBER
    assert role(Sender(3, user_is_bot=True)) == Role.BOT
    assert role(Sender(3, user_is_bot=True), frozenset({3})) == Role.BOT  # bots are never hosts
    assert role(Sender(None)) == Role.OTHER


def test_member_status() -> None:
    assert is_member_status("member")
    assert is_member_status("administrator")
    assert is_member_status("creator")
    assert is_member_status("restricted", True)
    assert not is_member_status("restricted", False)
    assert not is_member_status("left")
    assert not is_member_status("kicked")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("作业怎么交", True),
        ("today's session?", True),
        ("今天有直播吗  ", True),
        ("对的？ ", True),
        ("How do I join", True),
        ("HOW", True),
        ("somehow it works", False),  # Latin markers match whole words only
        ("whatever", False),
        ("thanks!", False),
        ("", False),
        (None, False),
        ("为啥", True),
    ],
)
def test_questions(text: str | None, expected: bool) -> None:
    assert is_question(text, DEFAULT_QUESTION_MARKERS) is expected


@given(st.text())
def test_is_question_never_raises(text: str) -> None:
    assert is_question(text, DEFAULT_QUESTION_MARKERS) in (True, False)


def post(
    mid: int, sender: int | None, minutes: float, r: Role = Role.MEMBER, q: bool = False
) -> Post:
    return Post(CHAT, mid, T0 + timedelta(minutes=minutes), r, sender, is_question=q)


def test_reply_to_host_is_response_only() -> None:
    marks = reply_marks(post(2, 5, 1), ReplyTarget(1, T0, Role.HOST, 1))
    assert [(m.user_id, m.level) for m in marks] == [(5, Level.RESPONSE)]


def test_host_reply_makes_no_one_active() -> None:
    assert reply_marks(post(2, 1, 1, Role.HOST), ReplyTarget(1, T0, Role.MEMBER, 5)) == []


def test_answer_window_is_inclusive_and_host_closes_it() -> None:
    q = post(1, 5, 0, q=True)
    assert answer_marks(post(2, 6, 10), [q], 600) != []
    assert answer_marks(post(2, 6, 10.01), [q], 600) == []
    assert answer_marks(post(3, 6, 2), [q, post(2, 1, 1, Role.HOST)], 600) == []
    assert answer_marks(post(3, 6, 2), [q, post(2, 9, 1, Role.BOT)], 600) != []


def test_answer_windows_are_per_forum_topic() -> None:
    """SPEC 9: only messages of the question's own topic answer it (None: the General
    topic), and a host post closes the windows of its own topic only."""
    q = replace(post(1, 5, 0, q=True), thread_id=7)
    assert answer_marks(replace(post(2, 6, 1), thread_id=7), [q], 600) != []
    assert answer_marks(replace(post(2, 6, 1), thread_id=8), [q], 600) == []
    assert answer_marks(post(2, 6, 1), [q], 600) == []
    host_elsewhere = replace(post(2, 1, 1, Role.HOST), thread_id=8)
    assert answer_marks(replace(post(3, 6, 2), thread_id=7), [q, host_elsewhere], 600) != []
    host_here = replace(host_elsewhere, thread_id=7)
    assert answer_marks(replace(post(3, 6, 2), thread_id=7), [q, host_here], 600) == []
