"""Metric names, their aliases (SPEC 5), retention windows and target range forms, bounded."""

from __future__ import annotations

import re

from bot.config import ascii_int

ALIASES = {
    "1h": "retention_1h",
    "same_day": "retention_day0",
    "next_day": "retention_day1",
    "response": "response_rate",
    "interaction": "interaction_rate",
    "referral": "referral_rate",
    "1小时留存": "retention_1h",
    "当天留存": "retention_day0",
    "次日留存": "retention_day1",
    "响应率": "response_rate",
    "互动率": "interaction_rate",
    "转介绍率": "referral_rate",
}
ACTIVE_METRICS = ("response_rate", "interaction_rate")
# metrics over a range of days (`last N` or campaign days A-B): the active rates, referrals
RANGED_METRICS = (*ACTIVE_METRICS, "referral_rate")
# windows past a month are typos, and the alert job reads 40 days back (bot/schedule.py)
MAX_WINDOW_DAYS, MAX_WINDOW_HOURS = 30, 720
MAX_RANGE_DAYS = 366  # `last N` and campaign days A-B
WINDOW_FORM = re.compile(r"(?:([0-9]+)h|day([0-9]+))", re.ASCII)
RANGE_LAST = re.compile(r"(?:last\s*)?([0-9]+)(?:\s*days?)?", re.ASCII)
RANGE_AB = re.compile(r"([0-9]+)\s*-\s*([0-9]+)", re.ASCII)


class WindowTooLong(ValueError):
    """A retention window past day30 / 720h."""


def parse_window_name(name: str) -> str:
    """`1h`, `720h`, `day0`, `day030` -> its canonical name (`day30`); ValueError if not a
    window, WindowTooLong past day30 / 720h."""
    m = WINDOW_FORM.fullmatch(name.strip().lower())
    if m is None:
        raise ValueError(f"window {name!r}: expected Nh (e.g. 1h, 24h) or dayN (e.g. day0, day1)")
    hours, days = m.group(1), m.group(2)
    if hours is not None:
        n = ascii_int(hours, MAX_WINDOW_HOURS)
        if n == 0:
            raise ValueError(f"window {name!r}: expected Nh with N from 1 to {MAX_WINDOW_HOURS}")
        if n is not None:
            return f"{n}h"
    else:
        n = ascii_int(days, MAX_WINDOW_DAYS)
        if n is not None:
            return f"day{n}"
    raise WindowTooLong(
        f"window {name[:32]!r}: at most day{MAX_WINDOW_DAYS} or {MAX_WINDOW_HOURS}h"
    )


def parse_metric(name: str) -> str:
    """Canonical metric name for a name or alias; ValueError listing valid names,
    WindowTooLong for a retention window past day30 / 720h."""
    key = name.strip()
    canonical = ALIASES.get(key, ALIASES.get(key.lower(), key.lower()))
    if canonical in RANGED_METRICS:
        return canonical
    if canonical.startswith("retention_"):
        try:
            return "retention_" + parse_window_name(canonical.removeprefix("retention_"))
        except WindowTooLong:
            raise
        except ValueError:
            pass
    raise ValueError(
        f"unknown metric {name[:32]!r}; valid: retention_1h, retention_day0, retention_day1, "
        f"retention_<window> (up to day{MAX_WINDOW_DAYS} or {MAX_WINDOW_HOURS}h), "
        "response_rate, interaction_rate, referral_rate (or 1h, same_day, next_day, "
        "response, interaction, referral, 1小时留存, 当天留存, 次日留存, 响应率, 互动率, 转介绍率)"
    )


def metric_window(metric: str) -> str | None:
    """The retention window of a retention metric (`retention_day1` -> `day1`)."""
    if not metric.startswith("retention_"):
        return None
    window = metric.removeprefix("retention_")
    return window if WINDOW_FORM.fullmatch(window) else None


def parse_range(text: str) -> str:
    """`last 7`, `7`, `last 7 days` -> `last 7`; `1-7` -> `1-7` (campaign days); each number
    from 1 to 366."""
    t = text.strip().lower()
    m = RANGE_LAST.fullmatch(t)
    if m:
        n = ascii_int(m.group(1), MAX_RANGE_DAYS)
        if n:
            return f"last {n}"
    m = RANGE_AB.fullmatch(t)
    if m:
        a, b = ascii_int(m.group(1), MAX_RANGE_DAYS), ascii_int(m.group(2), MAX_RANGE_DAYS)
        if a and b and a <= b:
            return f"{a}-{b}"
    raise ValueError(
        f'range {text[:32]!r}: expected "last N" (days, N from 1 to {MAX_RANGE_DAYS}) '
        f'or "A-B" (campaign days, 1 ≤ A ≤ B ≤ {MAX_RANGE_DAYS})'
    )
