"""Pure parsers for command arguments; a UsageError means: reply with the usage line."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from bot.config import ConfigError, parse_clock, parse_digest_to, parse_rate
from bot.targets import ACTIVE_METRICS, parse_metric, parse_range

MAX_DAYS = 90


class UsageError(ValueError):
    """Wrong arguments: `key` names the usage line in the catalog; `detail` says what."""

    def __init__(self, key: str, detail: str = "") -> None:
        super().__init__(detail or key)
        self.key = key
        self.detail = detail


def parse_days(args: list[str], usage: str, default: int = 7) -> int:
    if not args:
        return default
    if len(args) == 1 and args[0].isdigit() and 1 <= int(args[0]) <= MAX_DAYS:
        return int(args[0])
    raise UsageError(usage)


def parse_date_arg(args: list[str], usage: str) -> date | None:
    if not args:
        return None
    if len(args) == 1:
        try:
            return date.fromisoformat(args[0])
        except ValueError:
            pass
    raise UsageError(usage)


@dataclass(frozen=True, slots=True)
class TargetChange:
    metric: str
    value: float | None  # None: switch the target off
    range: str | None


def parse_settarget(args: list[str]) -> TargetChange:
    """`<metric> <value|off> [range]` — e.g. `次日留存 80%`, `response_rate 20% 1-7`."""
    if len(args) < 2:
        raise UsageError("usage_settarget")
    try:
        metric = parse_metric(args[0])
    except ValueError as exc:
        raise UsageError("usage_settarget", str(exc)) from None
    if args[1].lower() in ("off", "关闭", "clear") and len(args) == 2:
        return TargetChange(metric, None, None)
    try:
        value = parse_rate(args[1], "value")
    except ConfigError:
        raise UsageError("usage_settarget") from None
    rng = None
    if len(args) > 2:
        if metric not in ACTIVE_METRICS:
            raise UsageError("usage_settarget")
        try:
            rng = parse_range(" ".join(args[2:]))
        except ValueError:
            raise UsageError("usage_settarget") from None
    elif metric in ACTIVE_METRICS:
        rng = "last 7"
    return TargetChange(metric, value, rng)


SETTING_NAMES = ("timezone", "language", "digest_time", "digest_to")


def parse_setting(args: list[str]) -> tuple[str, str]:
    """`/settings <timezone|language|digest_time|digest_to> <value>` -> (column, value)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if len(args) != 2 or args[0] not in SETTING_NAMES:
        raise UsageError("usage_settings")
    name, value = args
    try:
        if name == "timezone":
            ZoneInfo(value)
        elif name == "language" and value not in ("zh", "en"):
            raise UsageError("usage_settings")
        elif name == "digest_time":
            value = parse_clock(value, name).strftime("%H:%M")
        elif name == "digest_to":
            value = parse_digest_to(value, name)
    except (ZoneInfoNotFoundError, ValueError, ConfigError):
        raise UsageError("usage_settings") from None
    return name, value
