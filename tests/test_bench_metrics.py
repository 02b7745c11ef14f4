"""The metrics benchmark at a tiny scale: its DuckDB SQL gives opsbot's numbers, its bench
join lands and is removed again, and a difference is reported (benchmarks/bench_metrics.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

pytest.importorskip("duckdb")  # the [bench] extra

from benchmarks import bench_metrics as bm  # noqa: E402
from bot.config import Config  # noqa: E402

SMALL = bm.Params(members=400, messages=6_000, days=35)


@pytest.fixture
def small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    monkeypatch.setattr(bm, "CACHE", tmp_path)
    url = bm.ensure_sqlite(SMALL, lambda: bm.generate(SMALL))
    duck = bm.ensure_duckdb(SMALL, lambda: bm.generate(SMALL))
    return url, str(duck)


@pytest.mark.parametrize("command", bm.COMMANDS)
def test_duckdb_sql_gives_opsbots_numbers(small: tuple[str, str], command: str) -> None:
    url, duck = small
    _, got = asyncio.run(bm.opsbot_call(url, command, join=False))
    _, expected = bm.duck_call(duck, command)
    assert bm.mismatches(expected, got) == []
    if command == "retention":  # the days are not empty: the comparison compares something
        assert sum(row[1] for row in got) > 100
        assert len(got) == bm.SPAN


def test_the_bench_join_counts_then_is_removed(small: tuple[str, str]) -> None:
    url, duck = small
    _, expected = bm.duck_call(duck, "retention")
    _, with_join = asyncio.run(bm.opsbot_call(url, "retention", join=True))
    found = bm.mismatches(expected, with_join)
    today = bm.NOW.astimezone(Config().for_chat(bm.CHAT_ID).tz).date().isoformat()
    assert found  # today's cohort and audience: one more
    assert all(f"[{today}]" in line for line in found)
    _, after = asyncio.run(bm.opsbot_call(url, "retention", join=False))
    assert bm.mismatches(expected, after) == []


def test_cli_prints_medians_ratios_and_the_check(
    small: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--members", "400", "--messages", "6000", "--days", "35", "--repeats", "1"]
    assert bm.main([*argv, "--commands", "report", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["medians_ms"]["report"]) == {"SQLite", "DuckDB"}
    assert out["ratio_to_duckdb"]["report"]["SQLite"] > 0
    assert out["numbers_vs_duckdb"] == {"SQLite": {"report": "equal"}}


def test_a_later_schema_runs_on_a_copy_of_the_generated_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bm, "CACHE", tmp_path)
    monkeypatch.setattr(bm, "SCHEMA_REVISION", "0006")  # rows written before 0007
    url = bm.ensure_sqlite(SMALL, lambda: bm.generate(SMALL))
    assert url.endswith(f"_at_{bm.schema_head()}.db")
    assert (tmp_path / f"metrics_{SMALL.key}.db").exists()  # the generated file is kept
    duck = bm.ensure_duckdb(SMALL, lambda: bm.generate(SMALL))
    _, got = asyncio.run(bm.opsbot_call(url, "report", join=False))
    _, expected = bm.duck_call(str(duck), "report")
    assert bm.mismatches(expected, got) == []
