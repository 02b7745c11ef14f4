"""Pure parsers for command arguments; a UsageError means: reply with the usage line."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import date
from typing import Any

from bot.config import (
    ConfigError,
    ascii_int,
    parse_clock,
    parse_digest_to,
    parse_language,
    parse_rate,
    parse_timezone,
)
from bot.targets import RANGED_METRICS, WindowTooLong, parse_metric, parse_range

MAX_DAYS = 90
MIN_DATE = date(2013, 1, 1)  # before Telegram; earlier dates overflow the date arithmetic


class UsageError(ValueError):
    """Wrong arguments: `key` names the usage line in the catalog; `reason`, if set, the
    catalog line said before it, with `given` (the user's input, quoted short) and `values`."""

    def __init__(self, key: str, reason: str = "", given: str = "", **values: Any) -> None:
        super().__init__(reason or key)
        self.key = key
        self.reason = reason
        self.given = given
        self.values = values


def parse_days(args: list[str], usage: str, default: int = 7) -> int:
    if not args:
        return default
    days = ascii_int(args[0], MAX_DAYS) if len(args) == 1 else None
    if days:
        return days
    raise UsageError(usage, "bad_days", " ".join(args), high=MAX_DAYS)


def parse_date_arg(args: list[str], usage: str) -> date | None:
    """A day from 2013 on; days still to come are for the caller to refuse."""
    if not args:
        return None
    day = None
    if len(args) == 1:
        with contextlib.suppress(ValueError):
            day = date.fromisoformat(args[0])
    if day is None or day < MIN_DATE:
        raise UsageError(usage, "bad_date", " ".join(args), low=MIN_DATE.isoformat())
    return day


def parse_metric_arg(name: str, usage: str) -> str:
    try:
        return parse_metric(name)
    except WindowTooLong:
        raise UsageError(usage, "bad_window", name) from None
    except ValueError:
        raise UsageError(usage, "unknown_metric", name) from None


@dataclass(frozen=True, slots=True)
class TargetChange:
    metric: str
    value: float | None  # None: switch the target off
    range: str | None


def parse_settarget(args: list[str]) -> TargetChange:
    """`<metric> <value|off> [range]` — e.g. `次日留存 80%`, `response_rate 20% 1-7`."""
    if len(args) < 2:
        raise UsageError("usage_settarget")
    metric = parse_metric_arg(args[0], "usage_settarget")
    if args[1].lower() in ("off", "关闭", "clear") and len(args) == 2:
        return TargetChange(metric, None, None)
    try:
        value = parse_rate(args[1], "value")
    except ConfigError:
        raise UsageError("usage_settarget", "bad_rate", args[1]) from None
    rng = None
    if len(args) > 2:
        if metric not in RANGED_METRICS:
            raise UsageError("usage_settarget")
        try:
            rng = parse_range(" ".join(args[2:]))
        except ValueError:
            raise UsageError("usage_settarget", "bad_range", " ".join(args[2:])) from None
    elif metric in RANGED_METRICS:
        rng = "last 7"
    return TargetChange(metric, value, rng)


SETTING_NAMES = ("timezone", "language", "digest_time", "digest_to")
SETTING_REASONS = {"timezone": "bad_timezone", "digest_to": "bad_chat_id"}


def parse_setting(args: list[str]) -> tuple[str, str]:
    """`/settings <timezone|language|digest_time|digest_to> <value>` -> (column, value),
    checked as the config file's values are, so it always fits its column."""
    if len(args) != 2 or args[0] not in SETTING_NAMES:
        raise UsageError("usage_settings")
    name, value = args
    try:
        if name == "timezone":
            value = parse_timezone(value, name)
        elif name == "language":
            value = parse_language(value, name)
        elif name == "digest_time":
            value = parse_clock(value, name).strftime("%H:%M")
        elif name == "digest_to":
            value = parse_digest_to(value, name)
    except ConfigError:
        raise UsageError("usage_settings", SETTING_REASONS.get(name, ""), value) from None
    return name, value
