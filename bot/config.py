"""Load and validate opsbot's TOML configuration (SPEC 10) into frozen dataclasses.

Every error names the key it is about, so the CLI can print one line and exit 2.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import time
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

DEFAULT_API_BASE_URL = "https://api.telegram.org"
DEFAULT_DB_URL = "sqlite+aiosqlite:///opsbot.db"
DEFAULT_QUESTION_MARKERS = (
    "吗",
    "怎么",
    "如何",
    "为什么",
    "为啥",
    "有没有",
    "是否",
    "how",
    "why",
    "what",
)
MAX_DURATION_S = 86400  # discussion_window, alert_interval: longer is a typo
MAX_RETENTION_DAYS = 36500  # [storage] retention_days: a century still fits a datetime
MAX_CHAT_ID = 2**52  # Telegram: chat ids have at most 52 significant bits
CAMPAIGN_YEARS = (2000, 2100)


class ConfigError(ValueError):
    """A configuration problem; the message names the key and says what is wrong."""


@dataclass(frozen=True, slots=True)
class Target:
    metric: str
    value: float  # 0..1
    range: str | None = None  # "last N" or "A-B" (campaign days); active rates only


@dataclass(frozen=True, slots=True)
class GroupSettings:
    """Settings for one group: defaults, overridden by its [groups."<id>"] section."""

    timezone: str = "Asia/Shanghai"
    language: str = "zh"
    digest_time: time = time(9, 0)
    digest_to: str = "group"  # group | admins | <chat id>
    digest_chart: bool = False
    windows: tuple[str, ...] = ("1h", "day0", "day1")
    question_markers: tuple[str, ...] = DEFAULT_QUESTION_MARKERS
    discussion_window_s: int = 600
    min_sample: int = 10
    alert_interval_s: int = 900
    public_commands: bool = False
    targets: tuple[Target, ...] = ()
    hosts: frozenset[int] = frozenset()
    campaign_start: str | None = None  # ISO date
    activation_days: int = 7  # SPEC 12: a newcomer's activation window, days D..D+N-1

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    """`[dashboard]`: the web dashboard and Mini App served next to the bot."""

    enabled: bool = False
    listen: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None  # https://… behind the TLS proxy; Mini Apps need HTTPS

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.listen}:{self.port}"


@dataclass(frozen=True, slots=True)
class Config:
    token: str | None = None
    api_base_url: str = DEFAULT_API_BASE_URL
    proxy: str | None = None  # http(s):// or socks5:// URL for every Bot API request
    mode: str = "polling"
    webhook_url: str | None = None
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = 8443
    storage_url: str = DEFAULT_DB_URL
    retention_days: int = 400
    defaults: GroupSettings = field(default_factory=GroupSettings)
    groups: Mapping[int, GroupSettings] = field(default_factory=dict)
    dashboard: DashboardSettings = field(default_factory=DashboardSettings)
    source: str | None = None  # the file it came from, for messages

    def for_chat(self, chat_id: int) -> GroupSettings:
        return self.groups.get(chat_id, self.defaults)

    def __repr__(self) -> str:  # never show the token
        return f"Config(source={self.source!r}, mode={self.mode!r}, storage_url=...)"


TELEGRAM_KEYS = {
    "token",
    "api_base_url",
    "proxy",
    "mode",
    "webhook_url",
    "webhook_listen",
    "webhook_port",
}
PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
STORAGE_KEYS = {"url", "retention_days"}
DASHBOARD_KEYS = {"enabled", "listen", "port", "public_url"}
SETTING_KEYS = {
    "timezone",
    "language",
    "digest_time",
    "digest_to",
    "digest_chart",
    "windows",
    "question_markers",
    "discussion_window",
    "min_sample",
    "alert_interval",
    "public_commands",
    "targets",
    "activation_days",
}
GROUP_ONLY_KEYS = {"hosts", "campaign_start", "title"}


def normalize_db_url(url: str, key: str = "storage.url") -> str:
    """Map plain sqlite:// and postgresql:// URLs to their async drivers (SPEC 10)."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith(("sqlite+aiosqlite:///", "postgresql+asyncpg://")):
        return url
    raise ConfigError(
        f"{key}: unsupported database URL; use sqlite:///PATH or postgresql://USER@HOST/DB"
    )


def parse_proxy(value: Any, key: str = "telegram.proxy") -> str:
    """A proxy URL httpx can use; the message never repeats it (it may hold a password)."""
    from urllib.parse import urlsplit

    example = "such as http://127.0.0.1:3128 or socks5://127.0.0.1:1080"
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a proxy URL {example}")
    parts = urlsplit(value.strip())
    if parts.scheme not in PROXY_SCHEMES:
        raise ConfigError(
            f"{key}: the scheme must be http, https, socks5 or socks5h; expected a URL {example}"
        )
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise ConfigError(f"{key}: expected a host and a port, {example}")
    if parts.scheme.startswith("socks"):
        import importlib.util

        if importlib.util.find_spec("socksio") is None:
            raise ConfigError(
                f"{key}: a SOCKS proxy needs the socksio package: "
                "pip install 'python-telegram-bot[socks]'"
            )
    return value.strip()


def parse_duration_s(value: Any, key: str) -> int:
    """`600`, `"10m"`, `"15 minutes"`, `"1h"`, `"30s"` -> seconds."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_DURATION_S:
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*(s|sec|seconds?|m|min|minutes?|h|hours?)?\s*", value)
        number = ascii_int(m.group(1), MAX_DURATION_S) if m else None
        if m and number:
            seconds = number * {"s": 1, "m": 60, "h": 3600}[(m.group(2) or "s")[0]]
            if seconds <= MAX_DURATION_S:
                return seconds
    raise ConfigError(
        f'{key}: expected a duration such as 600, "10m" or "1h", at most 24h; got {value!r}'
    )


def parse_rate(value: Any, key: str) -> float:
    """`0.8`, `80`, `"80%"` -> 0.8."""
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text.removesuffix("%")) / (100 if text.endswith("%") else 1)
        except ValueError:
            raise ConfigError(
                f'{key}: expected a rate such as 0.8 or "80%", got {value!r}'
            ) from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        raise ConfigError(f'{key}: expected a rate such as 0.8 or "80%", got {value!r}')
    if number > 1 and not (isinstance(value, str) and value.strip().endswith("%")):
        number /= 100  # `80` means 80%
    if not 0 <= number <= 1:
        raise ConfigError(f"{key}: a rate must be between 0 and 1 (or 0% and 100%)")
    return number


def _parse_targets(raw: Any, key: str) -> tuple[Target, ...]:
    from bot.targets import parse_metric, parse_range  # local: targets imports config

    if not isinstance(raw, dict):
        raise ConfigError(f"{key}: expected a table of metric = value")
    targets = []
    for metric_name, spec in raw.items():
        k = f"{key}.{metric_name}"
        try:
            metric = parse_metric(metric_name)
        except ValueError as exc:
            raise ConfigError(f"{k}: {exc}") from None
        rng: str | None = None
        if isinstance(spec, dict):
            unknown = set(spec) - {"value", "range"}
            if unknown:
                raise ConfigError(f"{k}.{sorted(unknown)[0]}: unknown key")
            if "value" not in spec:
                raise ConfigError(f"{k}.value: missing")
            value = parse_rate(spec["value"], f"{k}.value")
            if "range" in spec:
                try:
                    rng = parse_range(str(spec["range"]))
                except ValueError as exc:
                    raise ConfigError(f"{k}.range: {exc}") from None
        else:
            value = parse_rate(spec, k)
        targets.append(Target(metric, value, rng))
    return tuple(targets)


def _apply_settings(base: GroupSettings, raw: Mapping[str, Any], prefix: str) -> GroupSettings:
    allowed = SETTING_KEYS | (GROUP_ONLY_KEYS if prefix.startswith("groups.") else set())
    for k in raw:
        if k not in allowed:
            raise ConfigError(f"{prefix}.{k}: unknown key")
    changes: dict[str, Any] = {}
    for k, v in raw.items():
        key = f"{prefix}.{k}"
        if k == "timezone":
            changes["timezone"] = parse_timezone(v, key)
        elif k == "language":
            changes["language"] = parse_language(v, key)
        elif k == "digest_time":
            changes["digest_time"] = parse_clock(v, key)
        elif k == "digest_to":
            changes["digest_to"] = parse_digest_to(v, key)
        elif k in ("digest_chart", "public_commands"):
            if not isinstance(v, bool):
                raise ConfigError(f"{key}: expected true or false")
            changes[k] = v
        elif k == "windows":
            changes["windows"] = _parse_windows(v, key)
        elif k == "question_markers":
            if not isinstance(v, list) or not all(isinstance(w, str) and w.strip() for w in v):
                raise ConfigError(f"{key}: expected a list of strings")
            changes["question_markers"] = tuple(v)
        elif k == "discussion_window":
            changes["discussion_window_s"] = parse_duration_s(v, key)
        elif k == "alert_interval":
            changes["alert_interval_s"] = parse_duration_s(v, key)
        elif k == "min_sample":
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{key}: expected a positive whole number")
            changes["min_sample"] = v
        elif k == "targets":
            changes["targets"] = _parse_targets(v, key)
        elif k == "activation_days":
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 30:
                raise ConfigError(f"{key}: expected a whole number of days from 1 to 30")
            changes["activation_days"] = v
        elif k == "hosts":
            if not isinstance(v, list) or not all(
                isinstance(h, int) and not isinstance(h, bool) for h in v
            ):
                raise ConfigError(f"{key}: expected a list of Telegram user ids")
            changes["hosts"] = frozenset(v)
        elif k == "campaign_start":
            changes["campaign_start"] = _parse_date(v, key)
    return replace(base, **changes)


def ascii_int(text: str, high: int) -> int | None:
    """A whole number 0..high written in ASCII digits, else None. Checks the length before
    int(): `²` passes str.isdigit but not int(), and 10,000 digits pass neither."""
    digits = text.strip()
    if not digits.isascii() or not digits.isdigit():
        return None
    digits = digits.lstrip("0") or "0"
    if len(digits) > len(str(high)) or int(digits) > high:
        return None
    return int(digits)


def parse_timezone(value: Any, key: str) -> str:
    """An IANA zone name this machine knows (a 300-character word is an OSError to ZoneInfo)."""
    if isinstance(value, str) and len(value) <= 64 and value in _zone_names():
        return value
    shown = value[:32] + "…" if isinstance(value, str) and len(value) > 32 else value
    raise ConfigError(f'{key}: unknown timezone {shown!r}; use an IANA name like "Asia/Shanghai"')


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def parse_language(value: Any, key: str) -> str:
    if value not in ("zh", "en"):
        raise ConfigError(f'{key}: expected "zh" or "en", got {value!r}')
    return str(value)


def _parse_windows(value: Any, key: str) -> tuple[str, ...]:
    from bot.targets import WindowTooLong, parse_window_name  # local: targets imports config

    try:
        if isinstance(value, list) and value and all(isinstance(w, str) for w in value):
            return tuple(dict.fromkeys(parse_window_name(w) for w in value))
    except WindowTooLong as exc:
        raise ConfigError(f"{key}: {exc}") from None
    except ValueError:
        pass
    raise ConfigError(f'{key}: expected a list like ["1h", "day0", "day1"]')


def parse_clock(value: Any, key: str) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", value.strip())
        if m:
            return time(int(m.group(1)), int(m.group(2)))
    raise ConfigError(f'{key}: expected a time of day like "09:00", got {value!r}')


def parse_digest_to(value: Any, key: str) -> str:
    if value in ("group", "admins"):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        number: int | None = value
    elif isinstance(value, str):
        text = value.strip()
        number = ascii_int(text.removeprefix("-"), MAX_CHAT_ID - 1)
        if number is not None and text.startswith("-"):
            number = -number
    else:
        number = None
    if number is not None and 0 < abs(number) < MAX_CHAT_ID:
        return str(number)
    shown = value[:32] + "…" if isinstance(value, str) and len(value) > 32 else value
    raise ConfigError(f'{key}: expected "group", "admins" or a chat id, got {shown!r}')


def _parse_date(value: Any, key: str) -> str:
    from datetime import date

    if isinstance(value, date):
        return value.isoformat()
    low, high = CAMPAIGN_YEARS
    try:
        day = date.fromisoformat(str(value))
    except ValueError:
        day = None
    if day is None or not low <= day.year <= high:
        raise ConfigError(
            f"{key}: expected a date from {low}-01-01 to {high}-12-31 like 2026-11-01, "
            f"got {value!r}"
        )
    return day.isoformat()


def _section(raw: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: expected a table [{name}]")
    return value


def config_from_mapping(raw: Mapping[str, Any], source: str | None = None) -> Config:
    for k in raw:
        if k not in ("telegram", "storage", "defaults", "groups", "dashboard"):
            raise ConfigError(
                f"{k}: unknown key (expected [telegram], [storage], [defaults], [groups], "
                "[dashboard])"
            )
    tg, st = _section(raw, "telegram"), _section(raw, "storage")
    for k in tg:
        if k not in TELEGRAM_KEYS:
            raise ConfigError(f"telegram.{k}: unknown key")
    for k in st:
        if k not in STORAGE_KEYS:
            raise ConfigError(f"storage.{k}: unknown key")
    api = str(tg.get("api_base_url", DEFAULT_API_BASE_URL)).rstrip("/")
    if not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", api):
        raise ConfigError(f"telegram.api_base_url: expected an http(s) URL, got {api!r}")
    proxy = parse_proxy(tg["proxy"]) if tg.get("proxy") is not None else None
    mode = tg.get("mode", "polling")
    if mode not in ("polling", "webhook"):
        raise ConfigError(f'telegram.mode: expected "polling" or "webhook", got {mode!r}')
    webhook_url = tg.get("webhook_url")
    if mode == "webhook" and not webhook_url:
        raise ConfigError('telegram.webhook_url: required when telegram.mode = "webhook"')
    port = tg.get("webhook_port", 8443)
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError("telegram.webhook_port: expected a port number")
    token = tg.get("token") or os.environ.get("OPSBOT_TOKEN") or None
    if token is not None and not re.fullmatch(r"\d+:[\w-]+", str(token)):
        raise ConfigError("telegram.token: does not look like a bot token (digits:letters)")
    url = normalize_db_url(str(st.get("url", DEFAULT_DB_URL)))
    keep = st.get("retention_days", 400)
    if not isinstance(keep, int) or isinstance(keep, bool) or not 1 <= keep <= MAX_RETENTION_DAYS:
        raise ConfigError(
            f"storage.retention_days: expected a number of days from 1 to {MAX_RETENTION_DAYS}"
        )
    defaults = _apply_settings(GroupSettings(), _section(raw, "defaults"), "defaults")
    groups: dict[int, GroupSettings] = {}
    for chat_key, section in _section(raw, "groups").items():
        if not re.fullmatch(r"-?\d+", str(chat_key)):
            raise ConfigError(f'groups.{chat_key}: expected a numeric chat id like "-1001234"')
        if not isinstance(section, dict):
            raise ConfigError(f"groups.{chat_key}: expected a table")
        groups[int(chat_key)] = _apply_settings(defaults, section, f'groups."{chat_key}"')
    return Config(
        token=str(token) if token else None,
        api_base_url=api,
        proxy=proxy,
        mode=str(mode),
        webhook_url=webhook_url,
        webhook_listen=str(tg.get("webhook_listen", "127.0.0.1")),
        webhook_port=port,
        storage_url=url,
        retention_days=keep,
        defaults=defaults,
        groups=groups,
        dashboard=_parse_dashboard(_section(raw, "dashboard")),
        source=source,
    )


def _parse_dashboard(raw: Mapping[str, Any]) -> DashboardSettings:
    for k in raw:
        if k not in DASHBOARD_KEYS:
            raise ConfigError(f"dashboard.{k}: unknown key")
    enabled = raw.get("enabled", False)
    if not isinstance(enabled, bool):
        raise ConfigError("dashboard.enabled: expected true or false")
    port = raw.get("port", 8080)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ConfigError("dashboard.port: expected a port number")
    url = raw.get("public_url")
    if url is not None and not (
        isinstance(url, str) and re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", url)
    ):
        raise ConfigError(f"dashboard.public_url: expected an http(s) URL, got {url!r}")
    listen = raw.get("listen", "127.0.0.1")
    if not isinstance(listen, str) or not listen:
        raise ConfigError("dashboard.listen: expected an address such as 127.0.0.1")
    return DashboardSettings(enabled, listen, port, url.rstrip("/") if url else None)


def replace_storage(config: Config, url: str) -> Config:
    return replace(config, storage_url=normalize_db_url(url))


def config_path(explicit: str | None) -> Path | None:
    """--config, then OPSBOT_CONFIG, then ./config.toml if present (SPEC 10)."""
    if explicit:
        return Path(explicit)
    if os.environ.get("OPSBOT_CONFIG"):
        return Path(os.environ["OPSBOT_CONFIG"])
    default = Path("config.toml")
    return default if default.exists() else None


def token_file_warning(config: Config) -> str | None:
    """A world-readable config file that holds the token is worth a warning."""
    if not config.source or not config.token or os.environ.get("OPSBOT_TOKEN"):
        return None
    try:
        mode = Path(config.source).stat().st_mode
    except OSError:
        return None
    if mode & 0o004:
        return (
            f"warning: {config.source} holds the bot token and everyone on this machine "
            f"can read it: chmod 600 {config.source}, or use OPSBOT_TOKEN"
        )
    return None


def load_config(explicit: str | None = None) -> Config:
    path = config_path(explicit)
    if path is None:
        return config_from_mapping({})
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found (--config / OPSBOT_CONFIG)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return config_from_mapping(raw, source=str(path))
