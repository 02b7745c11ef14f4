"""Metric names, their aliases (SPEC 5) and target range forms."""

from __future__ import annotations

import re

ALIASES = {
    "1h": "retention_1h",
    "same_day": "retention_day0",
    "next_day": "retention_day1",
    "response": "response_rate",
    "interaction": "interaction_rate",
    "1小时留存": "retention_1h",
    "当天留存": "retention_day0",
    "次日留存": "retention_day1",
    "响应率": "response_rate",
    "互动率": "interaction_rate",
}
ACTIVE_METRICS = ("response_rate", "interaction_rate")
RETENTION_RE = re.compile(r"^retention_((?:[1-9]\d*h)|(?:day\d+))$")


def parse_metric(name: str) -> str:
    """Canonical metric name for a name or alias; ValueError listing valid names."""
    key = name.strip()
    canonical = ALIASES.get(key, ALIASES.get(key.lower(), key.lower()))
    if canonical in ACTIVE_METRICS or RETENTION_RE.match(canonical):
        return canonical
    raise ValueError(
        f"unknown metric {name!r}; valid: retention_1h, retention_day0, retention_day1, "
        "retention_<window>, response_rate, interaction_rate (or 1h, same_day, next_day, "
        "response, interaction, 1小时留存, 当天留存, 次日留存, 响应率, 互动率)"
    )


def metric_window(metric: str) -> str | None:
    """The retention window of a retention metric (`retention_day1` -> `day1`)."""
    m = RETENTION_RE.match(metric)
    return m.group(1) if m else None


def parse_range(text: str) -> str:
    """`last 7`, `7`, `last 7 days` -> `last 7`; `1-7` -> `1-7` (campaign days)."""
    t = text.strip().lower()
    m = re.fullmatch(r"(?:last\s*)?(\d+)(?:\s*days?)?", t)
    if m and int(m.group(1)) >= 1:
        return f"last {int(m.group(1))}"
    m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", t)
    if m and 1 <= int(m.group(1)) <= int(m.group(2)):
        return f"{int(m.group(1))}-{int(m.group(2))}"
    raise ValueError(f'range {text!r}: expected "last N" (days) or "A-B" (campaign days)')
