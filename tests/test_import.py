"""History import from Telegram Desktop exports (issue 6), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.config import Config
from bot.events import MemberKind
from bot.importer import ExportError, import_export
from storage.repo import Repo

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "telegram-desktop"
CONFIG = Config()


def fixture(name: str) -> Path:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"{path} not found (the shared folder sits beside the repository)")
    return path


def export(
    tmp_path: Path,
    messages: list[dict[str, Any]],
    type_: str = "private_supergroup",
    name: str = "result.json",
) -> Path:
    path = tmp_path / name
    path.write_text(
        json.dumps(
            {"name": "Camp", "type": type_, "id": 4242, "messages": messages}, ensure_ascii=False
        )
    )
    return path


T0 = 1_795_000_000


def svc(mid: int, dt: int, actor: tuple[str, int], action: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": mid,
        "type": "service",
        "date": "2026-11-19T10:00:00",
        "date_unixtime": str(T0 + dt),
        "actor": actor[0],
        "actor_id": f"user{actor[1]}",
        "action": action,
        "text": "",
        **extra,
    }


def msg(
    mid: int, dt: int, sender: tuple[str, int] | str, text: str = "hi", **extra: Any
) -> dict[str, Any]:
    frm, fid = (sender, None) if isinstance(sender, str) else (sender[0], f"user{sender[1]}")
    return {
        "id": mid,
        "type": "message",
        "date": "2026-11-19T10:00:00",
        "date_unixtime": str(T0 + dt),
        "from": frm,
        "from_id": fid,
        "text": text,
        "text_entities": [],
        **extra,
    }


HOST, ANN, BEN, CAT, DAN = ("Host", 1), ("Ann", 10), ("Ben", 11), ("Cat", 12), ("Dan", 13)
CHAT = -1004242


async def test_real_private_group_export(repo: Repo) -> None:
    [s] = await import_export(repo, CONFIG, fixture("private_group_joins_2022.json"))
    assert s.chat_id == -700209719
    assert (s.joins, s.leaves, s.messages, s.replies) == (3, 0, 7, 0)
    assert s.baseline == 2  # two people post without a recorded join
    h = await repo.history(-700209719)
    assert [e.user_id for e in h.membership] == [1156660166, 5759761889, 1046157991]
    assert h.tracking_start_utc == datetime.fromtimestamp(1669385429, UTC)
    assert h.baseline_count == 2


async def test_real_migrated_supergroup_export_needs_a_timezone(repo: Repo) -> None:
    path = fixture("public_supergroup_migration_minimal.json")
    before = await repo.counts()
    with pytest.raises(ExportError, match="--export-timezone"):
        await import_export(repo, CONFIG, path)
    assert await repo.counts() == before
    [s] = await import_export(repo, CONFIG, path, export_tz="Europe/Berlin")
    assert s.chat_id == -1009888888888  # pre-migration history filed under the supergroup
    assert (s.joins, s.leaves, s.messages) == (0, 0, 1)
    assert s.baseline == 1  # create_group: Ben is the creator (a host), BenBot a member
    assert s.unmatched_names == 1
    assert s.first == datetime(2021, 3, 18, 14, 20, 24, tzinfo=UTC)
    h = await repo.history(-1009888888888)
    assert [(c.user_id, c.is_host) for c in h.host_changes] == [(9999999999, True)]


def camp_day() -> list[dict[str, Any]]:
    return [
        svc(1, 0, HOST, "create_group", title="Camp", members=["Host", "Ann"]),
        svc(2, 60, BEN, "join_group_by_link", inviter="Group"),
        svc(3, 120, HOST, "invite_members", members=["Cat", "Nobody Known"]),
        svc(4, 130, DAN, "join_group_by_request"),
        msg(5, 200, HOST, "Day 1: reply with your goal"),
        msg(6, 260, BEN, "ship it", reply_to_message_id=5),
        msg(7, 300, CAT, "作业怎么交"),
        msg(8, 400, DAN, "看群公告"),  # answers Cat without replying
        msg(9, 500, ANN, "hello", reply_to_message_id=8),  # member-to-member reply
        {
            "id": 10,
            "type": "message",
            "date": "x",
            "date_unixtime": str(T0 + 550),
            "from": "Camp",
            "from_id": "channel4242",
            "text": "anonymous admin post",
        },
        msg(11, 600, CAT, "thanks", reply_to_message_id=10),
        svc(12, 700, BEN, "remove_members", members=["Ben"]),  # Ben leaves
        svc(13, 800, HOST, "remove_members", members=["Dan"]),  # Dan is removed
        msg(14, 900, "Deleted Account"),
        svc(15, 950, HOST, "pin_message", message_id=5),
        msg(16, 1000, CAT, "again?"),
        msg(17, 1000 + 601, DAN, "too late"),  # outside the 10-minute window
    ]


async def test_service_actions_and_activity(repo: Repo, tmp_path: Path) -> None:
    [s] = await import_export(repo, CONFIG, export(tmp_path, camp_day()), hosts=[1])
    assert (s.joins, s.leaves) == (3, 2)
    assert s.unmatched_names == 1
    assert s.baseline == 1  # Ann, from create_group
    assert s.skipped["messages without a sender (deleted accounts)"] == 1
    assert s.skipped["service action pin_message"] == 1
    h = await repo.history(CHAT)
    assert [(e.user_id, e.kind) for e in h.membership] == [
        (11, MemberKind.JOIN),
        (12, MemberKind.JOIN),
        (13, MemberKind.JOIN),
        (11, MemberKind.LEAVE),
        (13, MemberKind.LEAVE),
    ]
    marks = await repo.activity_marks(
        CHAT, datetime.fromtimestamp(T0, UTC), datetime.fromtimestamp(T0 + 5000, UTC)
    )
    got = sorted((m.level.value, m.user_id, m.message_id) for m in marks)
    # Ann replied to Dan (both ends); Dan answered Cat's question (both); Ben and Cat
    # replied to host posts (the anonymous admin's included); Dan's late answer counts not
    assert got == [
        ("interaction", 10, 9),
        ("interaction", 12, 7),
        ("interaction", 13, 8),
        ("response", 11, 6),
        ("response", 12, 11),
    ]


async def test_reimport_changes_nothing(repo: Repo, tmp_path: Path) -> None:
    path = export(tmp_path, camp_day())
    await import_export(repo, CONFIG, path, hosts=[1])
    before = await repo.counts()
    [s] = await import_export(repo, CONFIG, path, hosts=[1])
    assert await repo.counts() == before
    assert s.skipped["joins/leaves already stored"] == 5


async def test_old_format_integer_ids_with_export_timezone(repo: Repo, tmp_path: Path) -> None:
    items = [
        {
            "id": 1,
            "type": "service",
            "date": "2020-05-01T10:00:00",
            "actor": "Ann",
            "actor_id": 10,
            "action": "join_group_by_link",
            "text": "",
        },
        {
            "id": 2,
            "type": "message",
            "date": "2020-05-01T10:05:00",
            "from": "Ann",
            "from_id": 10,
            "text": [{"type": "plain", "text": "how do I "}, "start?"],
        },
    ]
    [s] = await import_export(repo, CONFIG, export(tmp_path, items), export_tz="Asia/Shanghai")
    assert s.first == datetime(2020, 5, 1, 2, 0, tzinfo=UTC)
    assert (s.joins, s.messages) == (1, 1)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"name": "x", "type": "private_group", "id": 1, "messages": [{"id": 1, ',
            "not valid JSON or cut short",
        ),
        ("this is not json", "not valid JSON"),
        ('{"hello": "world"}', "not a Telegram Desktop export"),
        ('{"name": "c", "type": "public_channel", "id": 5, "messages": []}', "not a group"),
        ('{"name": "p", "type": "personal_chat", "id": 5, "messages": []}', "not a group"),
    ],
)
async def test_broken_files_change_nothing(
    repo: Repo, tmp_path: Path, content: str, message: str
) -> None:
    await import_export(repo, CONFIG, export(tmp_path, camp_day(), name="good.json"))
    before = await repo.counts()
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(ExportError, match=message):
        await import_export(repo, CONFIG, bad)
    assert await repo.counts() == before


async def test_truncated_file_rolls_back_rows_already_written(repo: Repo, tmp_path: Path) -> None:
    good = export(tmp_path, camp_day())
    cut = tmp_path / "cut.json"
    cut.write_bytes(good.read_bytes()[:-60])
    with pytest.raises(ExportError):
        await import_export(repo, CONFIG, cut)
    counts = await repo.counts()
    assert counts["membership_events"] == counts["messages"] == 0


async def test_full_account_export(repo: Repo, tmp_path: Path) -> None:
    path = tmp_path / "account.json"
    path.write_text(
        json.dumps(
            {
                "about": "x",
                "chats": {
                    "list": [
                        {"name": "Me", "type": "personal_chat", "id": 1, "messages": []},
                        {
                            "name": "Camp",
                            "type": "private_supergroup",
                            "id": 4242,
                            "messages": camp_day(),
                        },
                    ]
                },
            },
            ensure_ascii=False,
        )
    )
    [s] = await import_export(repo, CONFIG, path)
    assert s.chat_id == CHAT
    assert s.joins == 3


def test_cli_import_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[storage]\nurl = "sqlite:///{tmp_path / "x.db"}"\n')
    assert main(["import", str(tmp_path / "missing.json"), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no such file" in err
    assert len(err.splitlines()) == 1
    good = export(tmp_path, camp_day())
    assert main(["import", str(good), "--host", "1", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "joins     3" in out
    assert "unmatched 1" in out
