"""`opsbot check`: the set-up checklist on the terminal, before a deploy.

One line per check, ✅ or ❌ with what to do; exit 1 when something must be fixed. It only
reads: getMe, getWebhookInfo, getChatMember, the schema revision; it changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from telegram import Bot, ChatMember, ChatMemberRestricted, User
from telegram.error import InvalidToken, NetworkError, TelegramError
from telegram.request import HTTPXRequest

from bot.config import Config

TIMEOUT_S = 15.0
NO_RIGHTS = "no particular right is needed"


Groups = dict[int, tuple[str | None, str | None, str | None]]  # id -> title, timezone, language


@dataclass(frozen=True, slots=True)
class Line:
    ok: bool
    text: str

    def __str__(self) -> str:
        return f"{'✅' if self.ok else '❌'} {self.text}"


@dataclass(frozen=True, slots=True)
class Stored:
    """What the database says: schema revisions, and the groups with their own settings."""

    lines: list[Line]
    groups: Groups


def add_check_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    add_config: Callable[[argparse.ArgumentParser], None],
) -> None:
    p = sub.add_parser(
        "check",
        help="set-up checklist before a deploy: token, privacy mode, admin rights in each "
        "group, chat_member updates, database schema, timezones, CJK font",
    )
    add_config(p)
    p.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace, config: Config) -> int:
    lines = asyncio.run(run_checks(config))
    for line in lines:
        print(line)
    bad = sum(not line.ok for line in lines)
    print(f"\n{len(lines) - bad} ok, {bad} to fix" if bad else f"\nall {len(lines)} checks ok")
    return 1 if bad else 0


async def run_checks(config: Config) -> list[Line]:
    stored = await check_database(config)
    lines = await check_telegram(config, stored.groups)
    return [
        *lines,
        *stored.lines,
        check_timezones(config, stored.groups),
        check_font(config, stored.groups),
    ]


# ---- Telegram ------------------------------------------------------------------------


async def check_telegram(config: Config, stored: Groups) -> list[Line]:
    if not config.token:
        return [
            Line(
                False,
                "token: telegram.token is not set: put it in the config file ([telegram] token) "
                "or in OPSBOT_TOKEN",
            )
        ]
    bot = Bot(
        config.token,
        base_url=f"{config.api_base_url}/bot",
        base_file_url=f"{config.api_base_url}/file/bot",
        request=HTTPXRequest(proxy=config.proxy),  # as `opsbot run` reaches Telegram
    )
    try:
        me = await asyncio.wait_for(bot.get_me(), TIMEOUT_S)
    except InvalidToken:  # its message quotes the token: never print it
        return [
            Line(
                False,
                "token: Telegram rejected it (401 Unauthorized): copy it again from @BotFather "
                "(/mybots → API Token) into [telegram] token or OPSBOT_TOKEN",
            )
        ]
    except (NetworkError, TimeoutError) as exc:
        return [
            Line(
                False,
                f"token: Telegram did not answer at {config.api_base_url} "
                f"({type(exc).__name__}): check the network or telegram.api_base_url",
            )
        ]
    try:
        lines = [
            Line(True, f"token: Telegram knows this bot as @{me.username} (id {me.id})"),
            privacy_line(me),
            await updates_line(bot, config),
        ]
        groups = sorted(set(config.groups) | set(stored))
        if not groups:
            lines.append(
                Line(
                    True,
                    "groups: none yet: after the deploy, add the bot to your group and make it "
                    f"an admin ({NO_RIGHTS})",
                )
            )
        for chat_id in groups:
            title = stored.get(chat_id, (None, None, None))[0]
            name = f"{title} ({chat_id})" if title else str(chat_id)
            lines.append(await admin_line(bot, me, chat_id, name))
        return lines
    finally:
        await bot.shutdown()


def privacy_line(me: User) -> Line:
    if me.can_read_all_group_messages:
        return Line(True, "privacy mode: off, the bot sees every group message")
    return Line(
        False,
        "privacy mode: on, the bot sees only commands, so activity rates stay at 0: @BotFather → "
        "/mybots → Bot Settings → Group Privacy → Turn off, then remove and re-add the bot "
        "to each group",
    )


async def updates_line(bot: Bot, config: Config) -> Line:
    try:
        info = await bot.get_webhook_info()
    except TelegramError as exc:
        return Line(
            False, f"chat_member updates: getWebhookInfo failed ({exc.message}): try again"
        )
    if config.mode == "polling":
        note = ""
        if info.url:
            note = (
                f"; a webhook is set ({urlsplit(info.url).hostname}): opsbot run removes it, "
                "so stop any other deployment that uses it"
            )
        return Line(
            True,
            "chat_member updates: polling mode, opsbot requests them in every getUpdates "
            "call (nothing to set up)" + note,
        )
    host = urlsplit(config.webhook_url or "").hostname
    if not info.url:
        return Line(
            True,
            f"chat_member updates: no webhook set yet; opsbot run sets it ({host}) with every "
            "update type, chat_member included",
        )
    if info.url != config.webhook_url:
        return Line(
            False,
            f"chat_member updates: the webhook points elsewhere ({urlsplit(info.url).hostname}, "
            f"not {host}): another deployment gets the updates; stop it, then opsbot run "
            "sets the webhook again",
        )
    if "chat_member" not in (info.allowed_updates or ()):
        return Line(
            False,
            "chat_member updates: the webhook does not ask for them (allowed_updates), so joins "
            "and leaves are not seen: restart opsbot run, which sets it with every update type",
        )
    return Line(True, f"chat_member updates: enabled on the webhook ({host})")


async def admin_line(bot: Bot, me: User, chat_id: int, name: str) -> Line:
    try:
        member = await bot.get_chat_member(chat_id, me.id)
    except TelegramError as exc:
        return Line(
            False,
            f"group {name}: Telegram says {exc.message!r}: add the bot to the group and make it "
            "an admin, or remove the group from the config file",
        )
    return member_line(member, name)


def member_line(member: ChatMember, name: str) -> Line:
    status = member.status
    if status in (ChatMember.ADMINISTRATOR, ChatMember.OWNER):
        return Line(True, f"group {name}: the bot is an admin ({NO_RIGHTS})")
    if status in (ChatMember.LEFT, ChatMember.BANNED):
        return Line(
            False,
            f"group {name}: the bot is not in it ({status}): add it back and make it an admin, "
            "or remove the group from the config file",
        )
    if isinstance(member, ChatMemberRestricted) and not member.can_send_messages:
        return Line(
            False,
            f"group {name}: the bot is restricted and may not send messages, so digests and "
            "replies fail, and it is not an admin, so joins and leaves are not seen: "
            f"lift the restriction and make it an admin ({NO_RIGHTS})",
        )
    return Line(
        False,
        f"group {name}: the bot is not an admin, so Telegram does not send it joins and "
        f"leaves: make it an admin ({NO_RIGHTS})",
    )


# ---- database, timezones, font -------------------------------------------------------


def shown_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def sqlite_path(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database)


def head_revision() -> str | None:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    from storage.db import MIGRATIONS

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


async def check_database(config: Config) -> Stored:
    from storage import db
    from storage.repo import Repo

    url = shown_url(config.storage_url)
    path = sqlite_path(config.storage_url)
    if path is not None and not path.exists():  # connecting would create it: check changes nothing
        return Stored(
            [
                Line(
                    False,
                    f"database: no file at {path}: run opsbot db upgrade to create it "
                    "(opsbot run also does)",
                )
            ],
            {},
        )
    engine = db.make_engine(config.storage_url)
    try:
        current = await asyncio.wait_for(db.current_revision(engine), TIMEOUT_S)
    except Exception as exc:  # any driver's error: say which, never a stack trace
        await engine.dispose()
        return Stored(
            [
                Line(
                    False,
                    f"database: {url} is unreachable ({type(exc).__name__}): check storage.url "
                    "and that the database server runs",
                )
            ],
            {},
        )
    head = head_revision()
    if current != head:
        await engine.dispose()
        what = f"at revision {current}" if current else "empty (no schema)"
        return Stored(
            [
                Line(
                    False,
                    f"database: {url} is {what}, this version needs {head}: run "
                    "opsbot db upgrade (opsbot run would do it at start; doing it now shows "
                    "any migration error before the deploy)",
                )
            ],
            {},
        )
    repo = Repo(engine)
    try:
        groups = {}
        for chat_id in await repo.chat_ids():
            info = await repo.chat(chat_id)
            if info is not None:
                groups[chat_id] = (info.title, info.timezone, info.language)
    finally:
        await repo.close()
    return Stored([Line(True, f"database: {url} reachable, schema up to date ({head})")], groups)


def check_timezones(config: Config, stored: Groups) -> Line:
    bad = []
    names = {config.defaults.timezone, *(s.timezone for s in config.groups.values())}
    for chat_id, (_, tz, _) in stored.items():
        if tz is None:
            continue
        names.add(tz)
        try:
            ZoneInfo(tz)
        except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
            bad.append(f"group {chat_id} has {tz!r}")
    if bad:
        return Line(
            False,
            f"timezones: {'; '.join(bad)}, not an IANA name this system knows: in that group "
            "send /settings timezone Asia/Shanghai (or your zone); if the name is right, "
            "install tzdata (pip install tzdata)",
        )
    return Line(True, f"timezones: {', '.join(sorted(names))} valid")


def check_font(config: Config, stored: Groups) -> Line:
    from bot import charts

    font = charts.cjk_font()
    if font:
        return Line(True, f"CJK font: {font}, charts get Chinese titles")
    languages = {config.defaults.language, *(s.language for s in config.groups.values())}
    languages |= {lang for _, _, lang in stored.values() if lang}
    if "zh" not in languages:
        return Line(True, "CJK font: none, and not needed (no group uses Chinese)")
    return Line(
        False,
        "CJK font: none, so charts fall back to English titles: install fonts-noto-cjk or "
        "fonts-wqy-microhei (Debian/Ubuntu); on macOS Arial Unicode MS or Heiti, or brew install "
        "--cask font-noto-sans-cjk-sc; then "
        f"remove matplotlib's font cache ({_font_cache()})",
    )


def _font_cache() -> str:
    import matplotlib

    return str(matplotlib.get_cachedir())
