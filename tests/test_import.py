"""History import from Telegram Desktop exports (SPEC 8, 9), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot import importer
from bot.cli import main
from bot.config import Config
from bot.events import MemberKind, MembershipEvent, Post, Role
from bot.importer import (
    NO_UNIXTIME,
    Clock,
    Effects,
    ExportError,
    MessageItem,
    ServiceItem,
    SkippedItem,
    bot_api_chat_id,
    import_export,
    message_sender,
    message_text,
    parse_item,
    peer_id,
    service_effects,
)
from storage import bulk
from storage.models import MessageRow, User
from storage.repo import Repo
from tests import export_factory as ef
from tests.export_factory import T0, at

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "telegram-desktop"
CONFIG = Config()
CHAT = -1004242  # the Bot API id of the factory's default export (private_supergroup 4242)
HOST, ANN, BEN, CAT, DAN, EVE = (
    ("Host", 1),
    ("Ann", 10),
    ("Ben", 11),
    ("Cat", 12),
    ("Dan", 13),
    ("Eve", 14),
)


NOBODY = importer.name_only_id(CHAT, "Nobody Known")  # invited in camp() and camp_day()


def export(
    tmp_path: Path,
    messages: list[dict[str, Any]],
    type_: str = "private_supergroup",
    name: str = "result.json",
) -> Path:
    """A single-chat export of `messages` (also used by tests/test_cli_offline.py)."""
    return ef.write(tmp_path, ef.chat(messages, type_), name)


camp_day = ef.camp_day  # also used by tests/test_cli_offline.py


def fixture(name: str) -> Path:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"{path} not found (the shared folder sits beside the repository)")
    return path


def membership(h: Any) -> list[tuple[int, str, int]]:
    return [(e.user_id, str(e.kind), int(e.ts_utc.timestamp()) - T0) for e in h.membership]


async def activity(repo: Repo, chat_id: int = CHAT) -> list[tuple[str, int, int]]:
    marks = await repo.activity_marks(chat_id, at(-(10**6)), at(10**6))
    return sorted((str(m.level), m.user_id, m.message_id) for m in marks)


async def messages(repo: Repo, chat_id: int = CHAT) -> dict[int, dict[str, Any]]:
    async with repo.engine.connect() as conn:
        rows = await conn.execute(select(MessageRow).where(MessageRow.chat_id == chat_id))
        return {r.message_id: dict(r._mapping) for r in rows}


# ---- the two real exports -------------------------------------------------------------


async def test_real_private_group_export(repo: Repo) -> None:
    [s] = await import_export(repo, CONFIG, fixture("private_group_joins_2022.json"))
    # private_group 700209719 -> basic group id -700209719
    assert (s.chat_id, s.title, s.type) == (-700209719, "New", "private_group")
    # three join_group_by_link; seven messages (the photo too), none a reply
    assert (s.joins, s.leaves, s.messages, s.replies) == (3, 0, 7, 0)
    # Naxalov and @RustamBek post without a recorded join: members from before
    assert s.baseline == 2
    assert s.name_only == 0
    assert not s.skipped
    assert (s.first, s.last) == (
        datetime.fromtimestamp(1669385429, UTC),
        datetime.fromtimestamp(1669385721, UTC),
    )
    h = await repo.history(-700209719)
    assert [(e.user_id, e.kind, int(e.ts_utc.timestamp()), e.source) for e in h.membership] == [
        (1156660166, MemberKind.JOIN, 1669385429, "import"),
        (5759761889, MemberKind.JOIN, 1669385516, "import"),
        (1046157991, MemberKind.JOIN, 1669385721, "import"),
    ]
    assert h.tracking_start_utc == datetime.fromtimestamp(1669385429, UTC)
    assert h.baseline_count == 2
    assert h.host_changes == []
    counts = await repo.counts()
    assert (counts["messages"], counts["users"], counts["activity"]) == (7, 5, 0)
    rows = await messages(repo, -700209719)
    assert sorted(rows) == list(range(211335, 211342))
    assert {r["role"] for r in rows.values()} == {"member"}
    assert rows[211336]["sender_id"] == 86775091  # the photo


async def test_real_migrated_supergroup_export(repo: Repo) -> None:
    path = fixture("public_supergroup_migration_minimal.json")
    before = await repo.counts()
    with pytest.raises(ExportError, match="no date_unixtime"):
        await import_export(repo, CONFIG, path)
    assert await repo.counts() == before
    [s] = await import_export(repo, CONFIG, path, export_tz="Europe/Berlin")
    # public_supergroup 9888888888: pre-migration history filed under the supergroup id
    assert s.chat_id == -1009888888888
    # one message (Ben's, the creator: a host post); create_group is no join
    assert (s.joins, s.leaves, s.messages, s.replies) == (0, 0, 1, 0)
    # create_group members Ben (the creator, a host) and BenBot (no id anywhere): baseline 1
    assert (s.baseline, s.name_only) == (1, 1)
    # 15:20:24 in Berlin (CET, UTC+1) .. the migration, 2021-03-22 15:56:27 CET
    assert s.first == datetime(2021, 3, 18, 14, 20, 24, tzinfo=UTC)
    assert s.last == datetime(2021, 3, 22, 14, 56, 27, tzinfo=UTC)
    h = await repo.history(-1009888888888)
    assert [(c.user_id, c.is_host, c.ts_utc) for c in h.host_changes] == [
        (9999999999, True, s.first)
    ]
    assert h.membership == []
    assert (h.tracking_start_utc, h.baseline_count) == (s.first, 1)
    rows = await messages(repo, -1009888888888)
    assert list(rows) == [-999678449]  # the negative pre-migration id is kept
    assert rows[-999678449]["role"] == "host"


# ---- service actions ------------------------------------------------------------------


def camp() -> list[dict[str, Any]]:
    return [
        ef.create_group(1, 0, HOST, ["Host", "Ann", "Zed Unknown"]),
        ef.join_by_link(2, 60, BEN),
        ef.join_by_request(3, 90, DAN),
        ef.invite(4, 120, HOST, ["Cat", "Nobody Known"]),  # Host invites: Host is no joiner
        ef.message(5, 200, CAT, "hello"),  # Cat's id, for the name in invite_members
        ef.remove(6, 300, BEN, ["Ben"]),  # Ben leaves on his own
        ef.remove(7, 400, HOST, ["Dan"]),  # Dan is removed by the host
        ef.remove(8, 500, HOST, ["Eve"]),  # Eve leaves with no join: a member from before
        ef.join_by_link(9, 550, EVE),
        ef.message(10, 600, EVE, "back"),
        ef.service(11, 650, HOST, "pin_message", message_id=10),
        ef.message(12, 700, None, "from a deleted account"),
    ]


async def test_service_actions(repo: Repo, tmp_path: Path) -> None:
    [s] = await import_export(repo, CONFIG, ef.write(tmp_path, ef.chat(camp())))
    assert s.chat_id == CHAT
    assert (s.joins, s.leaves, s.messages) == (5, 3, 2)
    # known by name only: Ann (never speaks or acts) and Zed Unknown in create_group,
    # Nobody Known (invited): each one person, with an id of their own
    assert (s.name_only, s.name_only_known) == (3, 0)
    assert s.baseline == 3  # Ann and Zed (create_group), Eve (left without a join)
    assert s.skipped == {
        "service action pin_message (nothing to record)": 1,
        "messages without a sender": 1,
    }
    h = await repo.history(CHAT)
    assert membership(h) == [
        (11, "join", 60),
        (13, "join", 90),
        (12, "join", 120),
        (NOBODY, "join", 120),
        (11, "leave", 300),
        (13, "leave", 400),
        (14, "leave", 500),
        (14, "join", 550),
    ]
    assert {e.source for e in h.membership} == {"import"}
    assert [(c.user_id, c.is_host, c.ts_utc) for c in h.host_changes] == [(1, True, at(0))]
    assert (h.tracking_start_utc, h.baseline_count) == (at(0), 3)
    names = await repo.user_names([1, 11, 12, 13, 14, NOBODY])
    assert names == {1: "Host", 11: "Ben", 12: "Cat", 13: "Dan", 14: "Eve", NOBODY: "Nobody Known"}


async def test_camp_day(repo: Repo, tmp_path: Path) -> None:
    [s] = await import_export(repo, CONFIG, export(tmp_path, camp_day()), hosts=[1])
    assert (s.joins, s.leaves, s.messages, s.replies) == (4, 2, 9, 3)  # 14 has no sender
    assert (s.baseline, s.name_only) == (1, 1)  # Ann; "Nobody Known"
    h = await repo.history(CHAT)
    assert membership(h) == [
        (11, "join", 60),
        (12, "join", 120),
        (NOBODY, "join", 120),
        (13, "join", 130),
        (11, "leave", 700),
        (13, "leave", 800),
    ]
    assert await activity(repo) == [
        ("interaction", 10, 9),  # Ann replied to Dan …
        ("interaction", 12, 7),  # … Cat's question was answered by Dan
        ("interaction", 13, 8),
        ("response", 11, 6),  # Ben replied to the host
        ("response", 12, 11),  # Cat replied to the anonymous admin
    ]


async def test_invite_members_names_matched_anywhere_in_the_export(
    repo: Repo, tmp_path: Path
) -> None:
    items = [
        ef.invite(1, 0, HOST, ["Ann", "Ben", "Ghost"]),
        ef.message(2, 10, HOST, "welcome"),
        ef.remove(3, 20, HOST, ["Ann"]),
        ef.message(4, 30, BEN, "hi"),  # Ben's name is learned after his join
        ef.service(5, 40, ANN, "join_group_by_link"),  # Ann's id, after she was named
        # two different people called "Twin": the name is neither, but one person of its own
        ef.message(6, 50, ("Twin", 20), "a"),
        ef.message(7, 60, ("Twin", 21), "b"),
        ef.invite(8, 70, HOST, ["Twin"]),
    ]
    [s] = await import_export(repo, CONFIG, ef.write(tmp_path, ef.chat(items)), hosts=[1])
    assert (s.joins, s.leaves, s.name_only) == (5, 1, 2)  # Ghost and "Twin" by name only
    assert s.baseline == 2  # the Twins post with no recorded join
    h = await repo.history(CHAT)
    ghost, twin = (importer.name_only_id(CHAT, n) for n in ("Ghost", "Twin"))
    assert membership(h) == [
        (10, "join", 0),
        (11, "join", 0),
        (ghost, "join", 0),
        (10, "leave", 20),
        (10, "join", 40),
        (twin, "join", 70),
    ]
    assert 1 not in {e.user_id for e in h.membership}  # the inviter did not join


async def test_create_group_members_are_the_baseline_not_joins(repo: Repo, tmp_path: Path) -> None:
    items = [
        ef.create_group(1, 0, HOST, ["Host", "Ann", "Ben", "Helper", "Cat"]),
        ef.message(2, 10, ANN, "hi"),
        ef.message(3, 20, ("Helper", 500), "I am a bot"),
        ef.message(4, 30, CAT, "hello"),
        ef.remove(5, 40, HOST, ["Ben"]),  # by name only: Ben never speaks or acts
        ef.remove(6, 50, CAT, ["Cat"]),  # Cat leaves: already in the baseline
    ]
    path = ef.write(tmp_path, ef.chat(items))
    # Cat is a host for the whole export (--host), Helper a bot (--bot)
    [s] = await import_export(repo, CONFIG, path, hosts=[12], bots=[500])
    assert (s.joins, s.leaves, s.messages) == (0, 2, 3)
    assert s.baseline == 2  # Ann, and "Ben" by name; not Host, Cat (hosts), Helper (bot)
    assert s.name_only == 1  # Ben, in create_group and in remove_members: one person
    h = await repo.history(CHAT)
    ben = importer.name_only_id(CHAT, "Ben")
    # Ben's removal is his leave; a host's leave is recorded, as live
    assert membership(h) == [(ben, "leave", 40), (12, "leave", 50)]
    assert sorted((c.user_id, c.ts_utc) for c in h.host_changes) == [(1, at(0)), (12, at(0))]
    assert h.baseline_count == 2
    async with repo.engine.connect() as conn:
        bots = set((await conn.execute(select(User.user_id).where(User.is_bot))).scalars())
    assert bots == {500}
    rows = await messages(repo)
    assert [rows[m]["role"] for m in (2, 3, 4)] == ["member", "bot", "host"]


async def test_migration_history_is_filed_under_the_supergroup(repo: Repo, tmp_path: Path) -> None:
    items = [
        ef.create_group(-999000010, 0, HOST, ["Host", "Ann"]),
        ef.message(-999000009, 10, HOST, "welcome"),
        ef.message(-999000008, 20, ANN, "thanks", reply_to=-999000009),
        ef.service(-999000007, 30, HOST, "migrate_to_supergroup"),
        ef.service(1, 30, ("Camp", 1), "migrate_from_group", title="Camp"),
        ef.message(2, 40, ANN, "again", reply_to=-999000009),
        ef.join_by_link(3, 50, BEN),
    ]
    path = ef.write(tmp_path, ef.chat(items, "public_supergroup", 777))
    # the live bot knew the basic group, and saw it migrate
    await repo.ensure_chat(-555, "Camp", "group")
    assert await repo.migrate_chat(-555, -100777)
    [s] = await import_export(repo, CONFIG, path, chat_id=-555)
    assert s.chat_id == -100777  # followed the migration
    assert (s.joins, s.messages, s.replies, s.baseline) == (1, 3, 2, 1)
    assert not s.skipped  # migrations are understood, not skipped
    assert sorted(await messages(repo, -100777)) == [-999000009, -999000008, 2]
    assert await activity(repo, -100777) == [("response", 10, -999000008), ("response", 10, 2)]
    h = await repo.history(-100777)
    assert membership(h) == [(11, "join", 50)]
    assert (await repo.history(-555)).membership == []  # nothing under the old id
    assert await messages(repo, -555) == {}


# ---- format generations ------------------------------------------------------------


def generation(legacy: bool) -> list[dict[str, Any]]:
    return [
        ef.join_by_link(1, 0, ANN, legacy=legacy),
        ef.message(2, 300, ANN, [{"type": "plain", "text": "how do I "}, "start"], legacy=legacy),
        ef.message(3, 360, BEN, "like this", legacy=legacy),
        ef.remove(4, 7200, ANN, ["Ann"], legacy=legacy),
    ]


@pytest.mark.parametrize("legacy", [False, True], ids=["user-ids+unixtime", "int-ids+local-date"])
async def test_both_format_generations_import_alike(
    repo: Repo, tmp_path: Path, legacy: bool
) -> None:
    path = ef.write(tmp_path, ef.chat(generation(legacy)))
    if legacy:
        with pytest.raises(ExportError, match="pass --export-timezone ZONE"):
            await import_export(repo, CONFIG, path)
    tz = ef.LEGACY_TZ if legacy else None
    [s] = await import_export(repo, CONFIG, path, export_tz=tz)
    assert (s.first, s.last) == (at(0), at(7200))
    assert (s.joins, s.leaves, s.messages, s.baseline) == (1, 1, 2, 1)
    h = await repo.history(CHAT)
    assert membership(h) == [(10, "join", 0), (10, "leave", 7200)]
    # Ann's question (text in parts, "how" as a word), answered by Ben without a reply
    assert await activity(repo) == [("interaction", 10, 2), ("interaction", 11, 3)]


async def test_date_unixtime_wins_over_the_export_timezone(repo: Repo, tmp_path: Path) -> None:
    path = ef.write(tmp_path, ef.chat(generation(False)))
    [s] = await import_export(repo, CONFIG, path, export_tz="America/New_York")
    assert s.first == at(0)


# ---- activity ------------------------------------------------------------------------


async def test_anonymous_admin_and_linked_channel_posts_are_host_posts(
    repo: Repo, tmp_path: Path
) -> None:
    await repo.ensure_chat(CHAT, "Camp", "supergroup")
    await repo.update_chat(CHAT, linked_chat_id=-100555)  # learned live with getChat
    items = [
        ef.message(1, 0, ANN, "hi"),
        ef.chat_post(2, 10, "channel4242", "Camp", "Day 1: reply with your goal"),
        ef.message(3, 20, BEN, "ship it", reply_to=2),
        ef.chat_post(4, 30, "channel999", "Some channel", "an ad"),
        ef.message(5, 40, CAT, "what ad?", reply_to=4),
        ef.chat_post(6, 50, "channel555", "Our channel", "news"),
        ef.message(7, 60, DAN, "nice", reply_to=6),
        ef.message(8, 70, EVE, "old", reply_to=12345),  # unknown target: a reply, no one active
    ]
    [s] = await import_export(repo, CONFIG, ef.write(tmp_path, ef.chat(items)))
    assert (s.messages, s.replies) == (8, 4)
    rows = await messages(repo)
    assert [
        (rows[m]["role"], rows[m]["sender_id"], rows[m]["sender_chat_id"]) for m in (2, 4, 6)
    ] == [
        ("host", None, CHAT),
        ("other", None, -100999),
        ("host", None, -100555),
    ]
    assert rows[3]["reply_to_message_id"] == 2
    assert rows[3]["is_response"]
    assert rows[8]["reply_to_message_id"] == 12345
    # Cat's "what ad?" is a reply to another channel: no question window either
    assert await activity(repo) == [("response", 11, 3), ("response", 13, 7)]


async def test_questions_answered_without_reply_within_the_window(
    repo: Repo, tmp_path: Path
) -> None:
    items = [
        ef.message(1, 0, ANN, "作业怎么交"),  # a question (CJK marker)
        ef.message(2, 100, BEN, "看群公告"),  # answers it: Ben and Ann
        ef.message(3, 200, CAT, "What time is it"),  # a question ("what"), and answers Ann
        ef.message(4, 250, HOST, "see the pinned message"),  # a host post closes windows
        ef.message(5, 300, DAN, "ok"),  # nothing open
        ef.message(6, 400, ANN, "Any updates?"),
        ef.message(7, 400 + 601, EVE, "late"),  # outside the 10-minute window
        ef.message(8, 1100, BEN, "yes", reply_to=6),  # a member-to-member reply: both ends
        ef.message(9, 1200, ANN, "me again", reply_to=6),  # a reply to oneself: nothing
        ef.message(10, 1210, CAT, "whatever"),  # "what" inside a word is no question
        ef.message(11, 1220, DAN, "sure"),
    ]
    [s] = await import_export(repo, CONFIG, ef.write(tmp_path, ef.chat(items)), hosts=[1])
    assert (s.messages, s.replies, s.baseline) == (11, 2, 5)
    assert await activity(repo) == [
        ("interaction", 10, 1),
        ("interaction", 10, 6),
        ("interaction", 11, 2),
        ("interaction", 11, 8),
        ("interaction", 12, 3),
    ]
    rows = await messages(repo)
    assert [m for m, r in sorted(rows.items()) if r["is_question"]] == [1, 3, 6]
    assert [m for m, r in sorted(rows.items()) if r["is_discussion"]] == [1, 2, 3, 6, 8]
    assert not any(r["is_response"] for r in rows.values())
    assert rows[4]["role"] == "host"


async def test_discussion_window_comes_from_the_group_settings(repo: Repo, tmp_path: Path) -> None:
    from dataclasses import replace

    settings = replace(CONFIG.defaults, discussion_window_s=60, question_markers=("求助",))
    config = replace(CONFIG, groups={CHAT: settings})
    items = [
        ef.message(1, 0, ANN, "求助"),
        ef.message(2, 61, BEN, "here"),  # 61 s > 60 s
        ef.message(3, 100, CAT, "how"),  # "how" is no marker in this group
        ef.message(4, 110, DAN, "x"),
    ]
    await import_export(repo, config, ef.write(tmp_path, ef.chat(items)))
    assert await activity(repo) == []
    assert [m for m, r in sorted((await messages(repo)).items()) if r["is_question"]] == [1]


async def test_replies_to_messages_no_longer_in_memory_are_read_back(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "RECENT_MESSAGES", 3)
    monkeypatch.setattr(bulk, "BATCH", 2)
    items = [ef.message(1, 0, HOST, "prompt"), ef.message(2, 5, ANN, "question?")]
    items += [ef.message(m, m * 1000, CAT, "chatter") for m in range(3, 9)]
    items += [
        ef.message(9, 9000, BEN, "answer", reply_to=1),
        ef.message(10, 9010, DAN, "answer", reply_to=2),
    ]
    [s] = await import_export(repo, CONFIG, ef.write(tmp_path, ef.chat(items)), hosts=[1])
    assert s.messages == 10
    assert await activity(repo) == [
        ("interaction", 10, 2),
        ("interaction", 13, 10),
        ("response", 11, 9),
    ]
    rows = await messages(repo)
    assert rows[2]["is_discussion"]
    assert rows[9]["is_response"]


# ---- idempotence, live overlap, atomicity ------------------------------------------


async def test_reimport_changes_nothing(repo: Repo, tmp_path: Path) -> None:
    path = ef.write(tmp_path, ef.chat(camp()))
    await import_export(repo, CONFIG, path, hosts=[1])
    before = await repo.counts()
    history = await repo.history(CHAT)
    [s] = await import_export(repo, CONFIG, path, hosts=[1])
    assert await repo.counts() == before
    assert (await repo.history(CHAT)).membership == history.membership
    assert (s.joins, s.leaves, s.messages) == (0, 0, 0)
    assert s.skipped["joins/leaves already stored (same event within 60 s)"] == 8
    # Ann, Zed Unknown and Nobody Known are the same people again: Nobody Known because the
    # database knows her in the group (her join), the founders by their names' own ids
    assert (s.name_only, s.name_only_known) == (3, 1)
    assert s.skipped["messages already stored"] == 2
    assert not s.baseline_applied
    assert s.tracking_start == at(0)


async def test_overlap_with_live_data_is_stored_once(repo: Repo, tmp_path: Path) -> None:
    # the live bot started later, saw Ben's join 30 s after the export's time (another
    # source) and Cat's message 5
    await repo.ensure_chat(CHAT, "Camp", "supergroup")
    await repo.start_tracking(CHAT, at(150), 40)
    await repo.record_membership(
        MembershipEvent(CHAT, 11, MemberKind.JOIN, at(90), 7, "chat_member")
    )
    await repo.record_post(Post(CHAT, 5, at(200), Role.MEMBER, 12), None, 600)
    items = [*camp(), ef.message(13, 800, DAN, "re", reply_to=5)]
    [s] = await import_export(repo, CONFIG, ef.write(tmp_path, ef.chat(items)))
    assert (s.joins, s.messages) == (4, 2)
    assert s.skipped["joins/leaves already stored (same event within 60 s)"] == 1
    assert s.skipped["messages already stored"] == 1
    h = await repo.history(CHAT)
    assert [(u, k, t) for u, k, t in membership(h) if u == 11] == [
        (11, "join", 90),
        (11, "leave", 300),
    ]
    # the export starts earlier: its start and baseline replace the live ones
    assert (h.tracking_start_utc, h.baseline_count) == (at(0), 3)
    assert s.baseline_applied
    # Dan's reply to the message stored live counts (both ends)
    assert await activity(repo) == [("interaction", 12, 5), ("interaction", 13, 13)]


async def test_an_earlier_live_tracking_start_is_kept(repo: Repo, tmp_path: Path) -> None:
    await repo.ensure_chat(CHAT, "Camp", "supergroup")
    await repo.start_tracking(CHAT, at(-86400), 40)
    [s] = await import_export(repo, CONFIG, ef.write(tmp_path, ef.chat(camp())))
    assert s.baseline == 3
    assert not s.baseline_applied
    h = await repo.history(CHAT)
    assert (h.tracking_start_utc, h.baseline_count) == (at(-86400), 40)
    assert "kept: the group is tracked from" in s.text()


async def test_a_failure_midway_leaves_the_database_as_it_was(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "BATCH", 2)  # rows are written before the failure
    await import_export(repo, CONFIG, ef.write(tmp_path, ef.chat(generation(False)), "a.json"))
    before = await repo.counts()

    async def broken(self: bulk.BulkWriter, chat_id: int) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(bulk.BulkWriter, "bump", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        await import_export(repo, CONFIG, ef.write(tmp_path, ef.chat(camp(), export_id=99)))
    assert await repo.counts() == before
    assert await repo.chat(-10099) is None


# ---- broken files --------------------------------------------------------------------


def broken_files(tmp_path: Path) -> dict[str, tuple[Path, dict[str, Any], str]]:
    good = ef.write(tmp_path, ef.chat(camp()), "good.json").read_bytes()
    cut = tmp_path / "cut.json"
    cut.write_bytes(good[: len(good) * 2 // 3])
    text = tmp_path / "notes.txt"
    text.write_text("this is not json")
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    return {
        "missing": (tmp_path / "missing.json", {}, "no such file"),
        "not json": (text, {}, "not valid JSON"),
        "truncated": (cut, {}, "not valid JSON, or cut short"),
        "empty": (empty, {}, "not valid JSON"),
        "a string": (ef.write(tmp_path, "", "str.json"), {}, "not a Telegram Desktop export"),
        "other json": (
            ef.write(tmp_path, {"hello": "world"}, "other.json"),
            {},
            "not a Telegram Desktop export",
        ),
        "a list": (ef.write(tmp_path, [1, 2], "list.json"), {}, "not a Telegram Desktop export"),
        "no type": (
            ef.write(tmp_path, {"name": "x", "messages": []}, "notype.json"),
            {},
            "a chat without type or id",
        ),
        "channel": (
            ef.write(tmp_path, ef.chat(camp(), "public_channel"), "channel.json"),
            {},
            "is a channel, not a group",
        ),
        "private chat": (
            ef.write(tmp_path, ef.chat(camp(), "personal_chat"), "private.json"),
            {},
            "is a private chat, not a group",
        ),
        "account without groups": (
            ef.write(tmp_path, ef.account([ef.chat([], "saved_messages")]), "acct.json"),
            {},
            "no group chats",
        ),
        "no timezone": (
            ef.write(tmp_path, ef.chat(generation(True)), "old.json"),
            {},
            "no date_unixtime \\(made before 2021\\): pass --export-timezone ZONE",
        ),
        "unknown timezone": (
            ef.write(tmp_path, ef.chat(generation(True)), "old2.json"),
            {"export_tz": "Mars/Olympus"},
            "unknown timezone 'Mars/Olympus'",
        ),
    }


CASES = [
    "missing",
    "not json",
    "truncated",
    "empty",
    "a string",
    "other json",
    "a list",
    "no type",
    "channel",
    "private chat",
    "account without groups",
    "no timezone",
    "unknown timezone",
]


@pytest.mark.parametrize("case", CASES)
async def test_broken_files_change_nothing(repo: Repo, tmp_path: Path, case: str) -> None:
    await import_export(repo, CONFIG, ef.write(tmp_path, ef.chat(generation(False)), "a.json"))
    before = await repo.counts()
    path, kwargs, message = broken_files(tmp_path)[case]
    with pytest.raises(ExportError, match=message) as err:
        await import_export(repo, CONFIG, path, **kwargs)
    assert "\n" not in str(err.value)
    assert await repo.counts() == before


def _counts(url: str) -> dict[str, int]:
    async def run() -> dict[str, int]:
        repo = await Repo.open(url)
        try:
            return await repo.counts()
        finally:
            await repo.close()

    return asyncio.run(run())


def _config_file(tmp_path: Path) -> tuple[Path, str]:
    cfg = tmp_path / "opsbot.toml"
    cfg.write_text(f'[storage]\nurl = "sqlite:///{tmp_path / "cli.db"}"\n')
    return cfg, f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"


@pytest.mark.parametrize("case", CASES)
def test_cli_import_errors_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    cfg, url = _config_file(tmp_path)
    good = ef.write(tmp_path, ef.chat(camp()), "first.json")
    assert main(["import", str(good), "--config", str(cfg)]) == 0
    capsys.readouterr()
    before = _counts(url)
    path, kwargs, message = broken_files(tmp_path)[case]
    argv = ["import", str(path), "--config", str(cfg)]
    if "export_tz" in kwargs:
        argv += ["--export-timezone", kwargs["export_tz"]]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("opsbot: import failed, nothing was changed: ")
    assert "Traceback" not in err
    assert re.search(message, err)
    assert _counts(url) == before


def test_cli_import_prints_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, url = _config_file(tmp_path)
    path = ef.write(tmp_path, ef.chat(camp()))
    argv = ["import", str(path), "--host", "1", "--bot", "500", "--config", str(cfg)]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert err == ""  # no progress bar when stderr is not a terminal
    lines = out.splitlines()
    assert lines[0] == f"chat      Camp ({CHAT}, private_supergroup)"
    assert lines[1] == "period    2026-11-18 11:06 .. 2026-11-18 11:18 UTC"
    assert "joins     5" in lines
    assert "leaves    3" in lines
    assert "messages  2 (0 replies)" in lines
    assert any(line.startswith("baseline  3 members before the first event") for line in lines)
    assert "by name   3 people known by name only" in lines
    assert "linked    none (no linked channel known or seen)" in lines
    assert "skipped   1 × messages without a sender" in lines
    assert len(lines) < 20
    assert _counts(url)["membership_events"] == 8


def test_cli_import_old_export_with_timezone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, _ = _config_file(tmp_path)
    path = fixture("public_supergroup_migration_minimal.json")
    argv = ["import", str(path), "--export-timezone", "Europe/Berlin", "--config", str(cfg)]
    assert main(argv) == 0
    assert "chat      test (-1009888888888, public_supergroup)" in capsys.readouterr().out
    argv = ["import", str(path), "--chat-id", "-1001", "--config", str(cfg)]
    assert main(argv) == 2
    assert "pass --export-timezone" in capsys.readouterr().err


# ---- full-account exports ----------------------------------------------------------


def account_export() -> dict[str, Any]:
    return ef.account(
        [
            ef.chat([ef.message(1, 0, ANN, "hi")], "personal_chat", 10, "Ann"),
            ef.chat(camp()),
            ef.chat([], "saved_messages", 1, ""),
            ef.chat(
                [ef.join_by_link(5, 0, DAN), ef.message(6, 10, DAN, "hello")],
                "private_group",
                99,
                "Basic",
            ),
            ef.chat([ef.message(1, 0, ANN, "news")], "public_channel", 5, "News"),
        ]
    )


async def test_full_account_export_imports_every_group(repo: Repo, tmp_path: Path) -> None:
    path = ef.write(tmp_path, account_export())
    summaries = await import_export(repo, CONFIG, path)
    assert [(s.chat_id, s.title, s.joins, s.leaves, s.messages) for s in summaries] == [
        (CHAT, "Camp", 5, 3, 2),
        (-99, "Basic", 1, 0, 1),
    ]
    assert membership(await repo.history(-99)) == [(13, "join", 0)]
    counts = await repo.counts()
    assert (counts["chats"], counts["messages"], counts["membership_events"]) == (2, 3, 9)
    before = counts
    await import_export(repo, CONFIG, path)
    assert await repo.counts() == before


@pytest.mark.parametrize("chat_id", [-99, 99])
async def test_full_account_export_one_group(repo: Repo, tmp_path: Path, chat_id: int) -> None:
    path = ef.write(tmp_path, account_export())
    [s] = await import_export(repo, CONFIG, path, chat_id=chat_id)
    assert (s.chat_id, s.joins) == (-99, 1)
    assert (await repo.counts())["chats"] == 1
    with pytest.raises(ExportError, match="no group with id 12345"):
        await import_export(repo, CONFIG, path, chat_id=12345)
    # one group's linked channel: with every group of the account, nothing is imported
    before = await repo.counts()
    with pytest.raises(ExportError, match="--linked-channel is one group's"):
        await import_export(repo, CONFIG, path, linked_channel=-100555)
    assert await repo.counts() == before
    [s] = await import_export(repo, CONFIG, path, chat_id=chat_id, linked_channel=-100555)
    assert (s.linked, s.linked_by) == (-100555, "flag")


async def test_single_chat_export_chat_id_overrides(repo: Repo, tmp_path: Path) -> None:
    [s] = await import_export(repo, CONFIG, ef.write(tmp_path, ef.chat(camp())), chat_id=-42)
    assert s.chat_id == -42
    assert len((await repo.history(-42)).membership) == 8
    assert await repo.chat(CHAT) is None


# ---- pure parts ---------------------------------------------------------------------


def test_peer_ids_and_chat_ids() -> None:
    assert peer_id("user123") == ("user", 123)
    assert peer_id(123) == ("user", 123)
    assert peer_id("channel77") == ("channel", 77)
    assert peer_id("chat5") == ("chat", 5)
    assert peer_id(None) is None
    assert peer_id("someone") is None
    assert bot_api_chat_id("private_supergroup", 4242) == -1004242
    assert bot_api_chat_id("public_supergroup", 9888888888) == -1009888888888
    assert bot_api_chat_id("private_group", 700209719) == -700209719


def test_text_parts_and_senders() -> None:
    parts = ["see ", {"type": "link", "text": "https://x"}, {"type": "bold", "text": "?"}]
    assert message_text(parts) == "see https://x?"
    assert message_text(None) == ""
    assert message_sender(("user", 5), 4242, CHAT, {5}).user_is_bot
    own = message_sender(("channel", 4242), 4242, CHAT, set())
    assert (own.user_id, own.sender_chat_id) == (None, CHAT)
    other = message_sender(("channel", 7), 4242, CHAT, set())
    assert (other.sender_chat_id, other.sender_chat_type) == (-1007, "channel")


def test_parse_item() -> None:
    clock = Clock(None)
    item = parse_item(ef.message(3, 5, ANN, "yo", reply_to=2), clock)
    assert item == MessageItem(3, at(5), ("user", 10), "Ann", "yo", 2)
    svc = parse_item(ef.invite(4, 6, HOST, ["Ann", "Ben"]), clock)
    assert svc == ServiceItem(4, at(6), "invite_members", 1, "Host", ("Ann", "Ben"))
    assert parse_item({"type": "message"}, clock) == SkippedItem(
        None, "items without a message id"
    )
    assert parse_item({"id": 1, "type": "weird", "date_unixtime": str(T0)}, clock) == SkippedItem(
        at(0), "items of type 'weird'"
    )
    with pytest.raises(ExportError, match=re.escape(NO_UNIXTIME)):
        parse_item(ef.message(1, 0, ANN, legacy=True), clock)
    berlin = parse_item(
        {"id": 1, "type": "message", "date": "2021-07-01T12:00:00"}, Clock("Europe/Berlin")
    )
    assert isinstance(berlin, MessageItem)
    assert berlin.ts_utc == datetime(2021, 7, 1, 10, 0, tzinfo=UTC)  # CEST


def test_service_effects() -> None:
    names = {"Ann": 10, "Ben": 11, "Twin": None}

    def svc(
        action: str, actor: tuple[str, int] | None, members: tuple[str | None, ...] = ()
    ) -> Effects:
        item = ServiceItem(
            1, at(0), action, actor[1] if actor else None, actor[0] if actor else None, members
        )
        return service_effects(item, names)

    assert svc("join_group_by_link", ANN).joins == (10,)
    assert svc("join_group_by_request", BEN).joins == (11,)
    assert svc("invite_members", HOST, ("Ann", "Twin", "Zed")).joins == (10, "Twin", "Zed")
    assert svc("remove_members", BEN, ("Ben",)).leaves == (11,)  # left on his own
    assert svc("remove_members", HOST, ("Ann",)).leaves == (10,)
    created = svc("create_group", HOST, ("Host", "Ann", None))
    assert (created.founders, created.hosts) == ((10, "Deleted Account"), (1,))
    assert created.joins == ()
    assert svc("migrate_from_group", HOST) == Effects()
    assert svc("pin_message", HOST).ignored


def test_progress_only_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        bar = importer._Progress(1000, "importing", stream)
        bar.update(500)
        bar.update(600)  # too soon: not redrawn
        bar.done()
    assert pipe.getvalue() == ""
    assert tty.getvalue().count("importing [############") == 1
    assert " 50%" in tty.getvalue()
    assert tty.getvalue().endswith("\r")
