"""Storage rules on a real database (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import storage.repo as repo_module
from bot.events import (
    HostChange,
    Level,
    MemberKind,
    MembershipEvent,
    Post,
    ReplyTarget,
    Role,
)
from storage.repo import Repo

CHAT = -1001
T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def join(user: int, minutes: float, source: str = "chat_member", seq: int = 0) -> MembershipEvent:
    return MembershipEvent(CHAT, user, MemberKind.JOIN, at(minutes), seq, source)


def leave(user: int, minutes: float, source: str = "chat_member", seq: int = 0) -> MembershipEvent:
    return MembershipEvent(CHAT, user, MemberKind.LEAVE, at(minutes), seq, source)


def post(
    mid: int, sender: int | None, minutes: float, role: Role = Role.MEMBER, question: bool = False
) -> Post:
    return Post(CHAT, mid, at(minutes), role, sender, is_question=question)


async def marks(repo: Repo, level: Level) -> set[tuple[int, int]]:
    found = await repo.activity_marks(CHAT, at(-10_000), at(10_000))
    return {(m.user_id, m.message_id) for m in found if m.level == level}


async def test_same_join_from_two_sources_within_60s_is_stored_once(repo: Repo) -> None:
    await repo.ensure_chat(CHAT, "g", "supergroup")
    assert await repo.record_membership(join(1, 0, "chat_member"))
    assert not await repo.record_membership(join(1, 0.5, "service"))
    assert not await repo.record_membership(join(1, 0, "chat_member"))  # redelivered update
    assert await repo.record_membership(join(1, 2, "service"))  # 120 s later: a new event
    history = await repo.history(CHAT)
    assert [e.ts_utc for e in history.membership] == [at(0), at(2)]


async def test_rejoin_with_leave_between_is_not_a_duplicate(repo: Repo) -> None:
    await repo.ensure_chat(CHAT, "g", "supergroup")
    assert await repo.record_membership(join(1, 0))
    assert await repo.record_membership(leave(1, 0.2))
    assert await repo.record_membership(join(1, 0.4))
    assert not await repo.record_membership(leave(1, 0.25, "service"))
    kinds = [e.kind for e in (await repo.history(CHAT)).membership]
    assert kinds == [MemberKind.JOIN, MemberKind.LEAVE, MemberKind.JOIN]


async def test_reply_to_host_marks_response(repo: Repo) -> None:
    await repo.record_post(post(1, 100, 0, Role.HOST), None, 600)
    await repo.record_post(post(2, 5, 1), ReplyTarget(1, at(0), Role.HOST, 100), 600)
    assert await marks(repo, Level.RESPONSE) == {(5, 2)}
    assert await marks(repo, Level.INTERACTION) == set()


async def test_member_reply_marks_both_ends_on_their_own_messages(repo: Repo) -> None:
    await repo.record_post(post(1, 5, 0), None, 600)
    await repo.record_post(post(2, 6, 1), ReplyTarget(1, at(0), Role.MEMBER, 5), 600)
    assert await marks(repo, Level.INTERACTION) == {(5, 1), (6, 2)}


async def test_stored_role_of_reply_target_wins_over_current_role(repo: Repo) -> None:
    # sent as a member, promoted since: the update now shows a host, the store a member
    await repo.record_post(post(1, 5, 0), None, 600)
    await repo.record_post(post(2, 6, 1), ReplyTarget(1, at(0), Role.HOST, 5), 600)
    assert await marks(repo, Level.RESPONSE) == set()
    assert await marks(repo, Level.INTERACTION) == {(5, 1), (6, 2)}


async def test_reply_to_self_bot_or_unknown_makes_no_one_active(repo: Repo) -> None:
    await repo.record_post(post(1, 5, 0), None, 600)
    await repo.record_post(post(2, 5, 1), ReplyTarget(1, at(0), Role.MEMBER, 5), 600)
    await repo.record_post(post(3, 6, 2), ReplyTarget(99, at(0), Role.BOT, 900), 600)
    await repo.record_post(post(4, 6, 3), ReplyTarget(98, at(0), Role.OTHER, None), 600)
    assert await marks(repo, Level.INTERACTION) == set()
    assert await marks(repo, Level.RESPONSE) == set()


async def test_question_answered_inside_window_counts_both(repo: Repo) -> None:
    await repo.record_post(post(1, 5, 0, question=True), None, 600)
    await repo.record_post(post(2, 6, 10), None, 600)  # exactly 10 min: inclusive
    assert await marks(repo, Level.INTERACTION) == {(5, 1), (6, 2)}


async def test_question_answered_after_window_counts_nobody(repo: Repo) -> None:
    await repo.record_post(post(1, 5, 0, question=True), None, 600)
    await repo.record_post(post(2, 6, 10.5), None, 600)
    assert await marks(repo, Level.INTERACTION) == set()


async def test_host_message_closes_the_question_window(repo: Repo) -> None:
    await repo.record_post(post(1, 5, 0, question=True), None, 600)
    await repo.record_post(post(2, 100, 1, Role.HOST), None, 600)
    await repo.record_post(post(3, 6, 2), None, 600)
    assert await marks(repo, Level.INTERACTION) == set()


async def test_bot_post_does_not_close_window_and_own_answer_does_not_count(repo: Repo) -> None:
    await repo.record_post(post(1, 5, 0, question=True), None, 600)
    await repo.record_post(post(2, 900, 1, Role.BOT), None, 600)
    await repo.record_post(post(3, 5, 2), None, 600)  # the asker themselves
    assert await marks(repo, Level.INTERACTION) == set()
    await repo.record_post(post(4, 7, 3), None, 600)
    assert await marks(repo, Level.INTERACTION) == {(5, 1), (7, 4)}


async def test_one_message_answers_several_questions(repo: Repo) -> None:
    await repo.record_post(post(1, 5, 0, question=True), None, 600)
    await repo.record_post(post(2, 6, 1, question=True), None, 600)
    await repo.record_post(post(3, 7, 2), None, 600)
    assert await marks(repo, Level.INTERACTION) == {(5, 1), (6, 2), (7, 3)}


async def test_same_post_twice_changes_nothing(repo: Repo) -> None:
    await repo.record_post(post(1, 100, 0, Role.HOST), None, 600)
    reply = ReplyTarget(1, at(0), Role.HOST, 100)
    assert await repo.record_post(post(2, 5, 1), reply, 600)
    before = await repo.counts()
    assert not await repo.record_post(post(2, 5, 1), reply, 600)
    assert await repo.counts() == before


async def test_admin_sync_records_only_changes(repo: Repo) -> None:
    await repo.ensure_chat(CHAT, "g", "supergroup")
    await repo.sync_admins(CHAT, {1, 2}, at(0))
    await repo.sync_admins(CHAT, {1, 2}, at(1))
    await repo.sync_admins(CHAT, {2, 3}, at(2))
    assert await repo.admin_hosts(CHAT) == {2, 3}
    changes = (await repo.history(CHAT)).host_changes
    assert [(c.ts_utc, c.user_id, c.is_host) for c in changes] == [
        (at(0), 1, True),
        (at(0), 2, True),
        (at(2), 3, True),
        (at(2), 1, False),
    ]
    assert not await repo.set_host(HostChange(CHAT, 3, at(3), True))


async def test_migration_moves_everything_and_negates_old_message_ids(repo: Repo) -> None:
    await repo.ensure_chat(CHAT, "g", "group")
    await repo.start_tracking(CHAT, at(0), 40)
    await repo.record_membership(join(1, 1))
    await repo.record_post(post(1, 5, 2, question=True), None, 600)
    await repo.record_post(post(2, 6, 3), None, 600)
    assert await repo.migrate_chat(CHAT, -100777)
    assert not await repo.migrate_chat(CHAT, -100777)
    moved = await repo.history(-100777)
    assert [e.user_id for e in moved.membership] == [1]
    assert moved.baseline_count == 40
    assert moved.tracking_start_utc == at(0)
    found = await repo.activity_marks(-100777, at(-1), at(100))
    assert {(m.user_id, m.message_id) for m in found} == {(5, -1), (6, -2)}
    assert (await repo.history(CHAT)).membership == []
    assert await repo.resolve_chat_id(CHAT) == -100777


async def test_clean_up_drops_old_messages_and_their_activity_only(repo: Repo) -> None:
    await repo.ensure_chat(CHAT, "g", "supergroup")
    await repo.record_membership(join(1, 0))
    await repo.record_post(post(1, 5, 0, question=True), None, 600)
    await repo.record_post(post(2, 6, 5), None, 600)
    await repo.record_post(post(3, 6, 60 * 24 * 10), None, 600)  # ten days later
    assert await repo.drop_old_messages(at(60 * 24)) == 2
    counts = await repo.counts()
    assert (counts["messages"], counts["activity"], counts["membership_events"]) == (1, 0, 1)


async def test_a_batch_is_all_or_nothing_and_forgets_what_it_wrote(repo: Repo) -> None:
    await repo.ensure_chat(CHAT, "g", "supergroup")
    try:
        async with repo.batch():
            await repo.record_users([(5, False, "Ann", None)])
            await repo.record_membership(join(5, 0))
            await repo.record_post(post(1, 100, 0, Role.HOST), None, 600)
            await repo.record_post(post(2, 5, 1), ReplyTarget(1, at(0), Role.HOST, 100), 600)
            raise RuntimeError("the commit never comes")
    except RuntimeError:
        pass
    counts = await repo.counts()
    assert counts["users"] == counts["messages"] == counts["activity"] == 0
    assert counts["membership_events"] == 0
    # the user cache was rolled back too: the same user is written again
    await repo.record_users([(5, False, "Ann", None)])
    assert (await repo.counts())["users"] == 1


async def test_a_batch_sees_its_own_rows_and_stores_a_repeat_once(repo: Repo) -> None:
    await repo.ensure_chat(CHAT, "g", "supergroup")
    async with repo.batch():
        await repo.record_post(post(1, 5, 0, question=True), None, 600)
        await repo.record_post(post(2, 6, 1), None, 600)  # answers the question in the batch
        await repo.record_post(post(2, 6, 1), None, 600)  # the same update, redelivered
        await repo.record_post(post(3, 7, 2), ReplyTarget(2, at(1), Role.MEMBER, 6), 600)
        await repo.record_membership(join(8, 3, "chat_member"))
        await repo.record_membership(join(8, 3.5, "service"))  # the same join, second source
        # another statement first writes what is buffered (order is kept): 7 is a host
        # from minute 4, after their reply
        assert await repo.set_host(HostChange(CHAT, 7, at(4), True))
    assert await marks(repo, Level.INTERACTION) == {(5, 1), (6, 2), (7, 3)}
    assert len((await repo.history(CHAT)).membership) == 1
    counts = await repo.counts()
    assert counts["messages"] == 3
    assert counts["activity"] == 3  # (6 via message 2) once, though two posts mark it


async def test_user_rows_are_rewritten_only_when_changed_or_stale(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The per-process cache of written user rows skips identical rewrites, but not a
    changed name, and not after the TTL (another process may have removed the row)."""
    other = await Repo.open(str(repo.engine.url.render_as_string(hide_password=False)))
    try:
        await repo.record_users([(5, False, "Ann", None)])
        await other.forget_user(5)  # another process: /forgetme
        await repo.record_users([(5, False, "Ann", None)])
        assert (await repo.counts())["users"] == 0  # unchanged and fresh: not rewritten
        await repo.record_users([(5, False, "Ann B", None)])
        assert await repo.user_names([5]) == {5: "Ann B"}  # a new name is written
        await other.forget_user(5)
        monkeypatch.setattr(repo_module, "KNOWN_USERS_TTL_S", -1)  # as if 5 minutes passed
        await repo.record_users([(5, False, "Ann B", None)])
        assert (await repo.counts())["users"] == 1
    finally:
        await other.close()
