"""Report texts: rates as SPEC 9 prints them, targets with their change, aligned tables."""

from __future__ import annotations

from bot.reports import _width, pct, retention_table, target_line


def test_rates_print_as_percent_with_counts_or_dash() -> None:
    assert pct(11 / 12, 11, 12) == "91.7% (11/12)"
    assert pct(None, 0, 0) == "—"
    assert pct(0.2) == "20.0%"


def test_target_line_shows_met_and_the_change_against_the_day_before() -> None:
    row = {
        "metric": "retention_day1",
        "target": 0.8,
        "value": 0.8889,
        "range": "2026-11-19",
        "met": True,
    }
    assert target_line(row, "en", 0.021) == (
        "✅ Next-day retention ≥ 80%: 88.9% ↑2.1 pp (2026-11-19)"
    )
    missed = row | {"value": 0.5, "met": False}
    assert target_line(missed, "zh", -0.1) == (
        "❌ 次日留存 ≥ 80%: 50.0% ↓10.0 个百分点 (2026-11-19)"
    )
    assert target_line(row | {"value": None, "met": None}, "en") == (
        "— Next-day retention ≥ 80%: — (2026-11-19)"
    )


def test_retention_table_pools_and_shows_pending() -> None:
    cell = {"retained": 1, "matured": 2, "pending": 3, "rate": 0.5}
    empty = {"retained": 0, "matured": 0, "pending": 0, "rate": None}
    rows = [
        {"day": "2026-11-19", "joins": 5, "cells": {"1h": cell}},
        {"day": "2026-11-20", "joins": 0, "cells": {"1h": empty}},
    ]
    text = retention_table(rows, ["1h"], "zh", "Asia/Shanghai")
    lines = text.splitlines()
    assert lines[0] == "留存，最近 2 天（Asia/Shanghai）"
    assert lines[2].split() == ["11-19", "5", "50.0%", "(1/2)", "+3…"]
    assert lines[3].split() == ["11-20", "0", "—"]
    assert lines[4].split() == ["合计", "5", "50.0%", "(1/2)", "+3…"]
    # CJK headers count double: the columns line up in a monospace block
    assert lines[1].split() == ["日期", "进群", "1小时"]
    header_col = _width(lines[1][: lines[1].index("1小时")])
    assert header_col == _width(lines[2][: lines[2].index("50.0%")])
