"""The offline path through the CLI (SPEC 8): import, report --json, export, chats, demo."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from bot.cli import main
from tests.test_import import NOBODY, camp_day, export


@pytest.fixture
def config_file(tmp_path: Path) -> str:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[storage]\nurl = "sqlite:///{tmp_path / "opsbot.db"}"\n')
    return str(cfg)


def test_report_json_equals_the_hand_checked_numbers(
    tmp_path: Path, config_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["import", str(export(tmp_path, camp_day())), "--host", "1", "--config", config_file])
        == 0
    )
    capsys.readouterr()
    assert (
        main(
            [
                "report",
                "--chat",
                "-1004242",
                "--date",
                "2026-11-18",
                "--json",
                "--config",
                config_file,
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    # create_group: host 1 and Ann (baseline 1); Ben, Cat, Nobody Known (by name only),
    # Dan join; Ben leaves after 11 minutes, Dan is removed after 11: Cat and Nobody Known
    # are still in at 1 h and at midnight. Ben and Cat replied to host posts; Ann, Cat and
    # Dan took part in discussion.
    assert report == {
        "chat_id": -1004242,
        "date": "2026-11-18",
        "timezone": "Asia/Shanghai",
        "joins": 4,
        "leaves": 2,
        "headcount_end": 3,
        "retention": {
            "1h": {
                "cohort": "2026-11-18",
                "retained": 2,
                "matured": 4,
                "pending": 0,
                "rate": 0.5,
            },
            "day0": {
                "cohort": "2026-11-18",
                "retained": 2,
                "matured": 4,
                "pending": 0,
                "rate": 0.5,
            },
            "day1": {
                "cohort": "2026-11-17",
                "retained": 0,
                "matured": 0,
                "pending": 0,
                "rate": None,
            },
        },
        "active": {
            "audience": 5,
            "response": {"users": 2, "rate": 0.4},
            "interaction": {"users": 3, "rate": 0.6},
        },
        "targets": [],
    }


def test_export_and_chats(
    tmp_path: Path, config_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["import", str(export(tmp_path, camp_day())), "--host", "1", "--config", config_file])
    assert main(["chats", "--config", config_file]) == 0
    assert "-1004242  Camp  2026-11-18 .. 2026-11-18  (6 membership events)" in (
        capsys.readouterr().out
    )
    out = tmp_path / "csv"
    assert (
        main(
            [
                "export",
                "--chat",
                "-1004242",
                "--days",
                "30",
                "--out",
                str(out),
                "--config",
                config_file,
            ]
        )
        == 0
    )
    members = (out / "opsbot_-1004242_members.csv").read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(members.splitlines()))
    assert [(r["user_id"], r["event"]) for r in rows] == [
        ("11", "join"),
        ("12", "join"),
        (str(NOBODY), "join"),
        ("13", "join"),
        ("11", "leave"),
        ("13", "leave"),
    ]
    daily = list(
        csv.DictReader(
            (out / "opsbot_-1004242_daily.csv").read_text(encoding="utf-8-sig").splitlines()
        )
    )
    day = next(r for r in daily if r["date"] == "2026-11-18")
    assert (day["joins"], day["audience"], day["response_rate"]) == ("4", "5", "0.4")
    assert main(["export", "--chat", "-42", "--config", config_file]) == 1


def test_demo_shows_digest_table_and_chart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--config", str(tmp_path / "none.toml")]) == 2
    capsys.readouterr()
    cfg = tmp_path / "empty.toml"
    cfg.write_text("")
    assert main(["demo", "--out", str(out), "--config", str(cfg)]) == 0
    text = capsys.readouterr().out
    assert "📊" in text
    assert "留存，最近 14 天" in text
    assert "次日留存 ≥ 80%" in text
    png = (out / "trend_retention_day1.png").read_bytes()
    assert png.startswith(b"\x89PNG")
