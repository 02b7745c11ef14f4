"""`opsbot demo` through the CLI: its history ends when it runs, so yesterday is a real day."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.cli import main

SECTIONS = (
    "— Yesterday's digest, {yesterday} (what the bot posts at 09:00) —",
    "— Retention by join day, last 14 days (/retention 14); today's joins are still pending —",
    "— Active members per day, last 7 days (/active 7); today is partial —",
)


def _rate(text: str, label: str) -> float:
    m = re.search(rf"{label}: (\d+\.\d)% \((\d+)\)", text)
    assert m, f"no {label} line in the digest"
    return float(m.group(1))


def test_demo_digest_is_a_full_yesterday_with_real_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "empty.toml"
    cfg.write_text("")
    out = tmp_path / "demo"
    before = datetime.now(UTC)
    assert main(["demo", "--out", str(out), "--config", str(cfg)]) == 0
    after = datetime.now(UTC)
    text = capsys.readouterr().out
    tz = ZoneInfo("Asia/Shanghai")  # the default timezone
    # the day the demo saw as yesterday (a run across midnight sees the earlier one)
    yesterday = next(
        d
        for d in (t.astimezone(tz).date() - timedelta(days=1) for t in (before, after))
        if SECTIONS[0].format(yesterday=d) in text
    )

    lines = text.splitlines()
    for section in SECTIONS:
        assert section.format(yesterday=yesterday) in lines
    # the digest is the first thing after the two set-up lines, and it is yesterday's
    digest = text.split(SECTIONS[0].format(yesterday=yesterday))[1].split("\n— ")[0]
    assert f"— {yesterday}" in digest.splitlines()[1]
    joins = re.search(r"进群 (\d+) · 退群 (\d+)", digest)
    assert joins
    assert int(joins.group(1)) > 0
    assert _rate(digest, "响应级") > 0
    assert _rate(digest, "互动级") > 0

    # the retention table: yesterday's row has joins and matured 1h/day0 rates
    table = text.split(SECTIONS[1])[1].split("\n— ")[0].strip().splitlines()
    row = next(r for r in table if r.startswith(f"{yesterday:%m-%d} "))
    assert int(row.split()[1]) > 0
    assert "%" in row.split()[2]
    # and the active table has real rates for yesterday
    active = text.split(SECTIONS[2])[1].split("\n3. ")[0].strip().splitlines()
    row = next(r for r in active if r.startswith(f"{yesterday:%m-%d} "))
    assert all(float(c.rstrip("%")) > 0 for c in row.split()[2:4])

    # the export stops at the moment the demo ran, and covers yesterday's last hour
    items = json.loads((out / "result.json").read_text(encoding="utf-8"))["messages"]
    stamps = [int(i["date_unixtime"]) for i in items]
    assert max(stamps) < after.timestamp()
    midnight = datetime.combine(yesterday + timedelta(days=1), datetime.min.time(), tz)
    assert any(midnight.timestamp() - 3600 <= s < midnight.timestamp() for s in stamps)
    assert before.timestamp() - 86400 * 32 < min(stamps)
