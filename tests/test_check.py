"""`opsbot check` through the real CLI against the fake Bot API server: every ✅ and ❌."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from telegram import Bot, Update

from bot import charts
from bot.check import head_revision
from bot.cli import main
from storage import db
from storage.repo import Repo
from tests import tg
from tests.botapi_server import BOT_ID, TOKEN, FakeBotAPI
from tests.test_botapi_shapes import problems

GROUP = -1005550001
OTHER = -1005550002
BOT_USER = tg.user(BOT_ID, "opsbot", True)
HOOK = "https://bot.example.com/telegram"


@pytest.fixture
def api() -> Iterator[FakeBotAPI]:
    server = FakeBotAPI().start()
    server.chats[GROUP] = tg.group(GROUP, "Camp")
    server.admins[GROUP] = [tg.member(tg.user(1), "creator"), tg.member(BOT_USER, "administrator")]
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def font(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CJK font is found, unless a test says otherwise (the lookup is charts.cjk_font)."""
    monkeypatch.setattr(charts, "cjk_font", lambda: "Noto Sans CJK SC")


def write_config(
    tmp_path: Path,
    api: FakeBotAPI,
    *,
    db_url: str | None = None,
    token: str = TOKEN,
    extra: str = "",
    telegram: str = "",
) -> str:
    url = db_url or f"sqlite:///{tmp_path / 'opsbot.db'}"
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[telegram]\ntoken = "{token}"\napi_base_url = "{api.base_url}"\n{telegram}\n'
        f'[storage]\nurl = "{url}"\n{extra}'
    )
    return str(cfg)


def upgraded(tmp_path: Path, revision: str = "head", **chats: Any) -> str:
    """A SQLite database at `revision`, knowing the group GROUP if `chats` say so."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'opsbot.db'}"

    async def go() -> None:
        engine = db.make_engine(url)
        await db.upgrade(engine, revision)
        if revision == "head":
            repo = Repo(engine)
            for chat_id, values in chats.get("known", {}).items():
                await repo.ensure_chat(chat_id, values.pop("title", None), "supergroup")
                await repo.update_chat(chat_id, bot_status="administrator", **values)
        await engine.dispose()

    asyncio.run(go())
    return url


def check(cfg: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["check", "--config", cfg])
    out = capsys.readouterr().out
    return code, [line for line in out.splitlines() if line[:1] in ("✅", "❌")]


def line(lines: list[str], start: str) -> str:
    [found] = [x for x in lines if x[2:].startswith(start)]
    return found


def test_all_good_every_line_ticked_exit_0(
    tmp_path: Path, api: FakeBotAPI, capsys: pytest.CaptureFixture[str], db_url: str
) -> None:
    async def known() -> None:  # the group in the database, as the live bot leaves it
        repo = await Repo.open(db_url)
        await repo.ensure_chat(GROUP, "Camp", "supergroup")
        await repo.update_chat(GROUP, bot_status="administrator", timezone="Europe/Berlin")
        await repo.close()

    asyncio.run(known())
    code, lines = check(write_config(tmp_path, api, db_url=db_url), capsys)
    assert code == 0
    assert lines == [
        "✅ token: Telegram knows this bot as @opsbot_test_bot (id 999000)",
        "✅ privacy mode: off, the bot sees every group message",
        "✅ chat_member updates: polling mode, opsbot requests them in every getUpdates call "
        "(nothing to set up)",
        f"✅ group Camp ({GROUP}): the bot is an admin (no particular right is needed)",
        line(lines, "database:"),
        "✅ timezones: Asia/Shanghai, Europe/Berlin valid",
        "✅ CJK font: Noto Sans CJK SC, charts get Chinese titles",
    ]
    assert "reachable, schema up to date" in line(lines, "database:")
    assert "✅ database" in line(lines, "database:")
    assert [c.method for c in api.calls] == ["getMe", "getWebhookInfo", "getChatMember"]


def test_bad_token_is_401_and_never_printed(
    tmp_path: Path, api: FakeBotAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    upgraded(tmp_path)
    code = main(["check", "--config", write_config(tmp_path, api, token="42:WRONG-SECRET")])
    out, err = capsys.readouterr()
    assert code == 1
    assert "❌ token: Telegram rejected it (401 Unauthorized)" in out
    assert "WRONG-SECRET" not in out + err
    assert "Traceback" not in out + err
    assert "privacy mode" not in out  # nothing more to ask Telegram with a bad token


def test_missing_token_names_the_key(
    tmp_path: Path, api: FakeBotAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    upgraded(tmp_path)
    code, lines = check(write_config(tmp_path, api, token=""), capsys)
    assert code == 1
    assert line(lines, "token:").startswith("❌ token: telegram.token is not set")
    assert api.calls == []


def test_privacy_mode_on(
    tmp_path: Path, api: FakeBotAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    upgraded(tmp_path)
    api.privacy_mode_off = False
    code, lines = check(write_config(tmp_path, api), capsys)
    assert code == 1
    assert line(lines, "privacy mode:").startswith("❌ privacy mode: on")
    assert "Group Privacy → Turn off" in line(lines, "privacy mode:")


@pytest.mark.parametrize(
    ("member", "expected"),
    [
        (tg.member(BOT_USER, "member"), "the bot is not an admin, so Telegram does not send it"),
        (
            tg.member(BOT_USER, "restricted", False),
            "the bot is restricted and may not send messages",
        ),
        (tg.member(BOT_USER, "left"), "the bot is not in it (left)"),
        (tg.member(BOT_USER, "kicked"), "the bot is not in it (kicked)"),
    ],
)
def test_bot_without_admin_rights_in_a_known_group(
    tmp_path: Path,
    api: FakeBotAPI,
    capsys: pytest.CaptureFixture[str],
    member: dict[str, Any],
    expected: str,
) -> None:
    assert problems(member, "ChatMember") == []
    api.admins[GROUP] = [tg.member(tg.user(1), "creator")]
    api.members[(GROUP, BOT_ID)] = member
    upgraded(tmp_path, known={GROUP: {"title": "Camp"}})
    code, lines = check(write_config(tmp_path, api), capsys)
    assert code == 1
    assert line(lines, f"group Camp ({GROUP}):").startswith(f"❌ group Camp ({GROUP}): {expected}")


def test_plain_member_by_default_and_configured_group_telegram_does_not_know(
    tmp_path: Path, api: FakeBotAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    api.admins[GROUP] = [tg.member(tg.user(1), "creator")]  # the bot is in it, not an admin
    upgraded(tmp_path)
    extra = f'[groups."{GROUP}"]\nlanguage = "en"\n[groups."{OTHER}"]\nlanguage = "en"\n'
    code, lines = check(write_config(tmp_path, api, extra=extra), capsys)
    assert code == 1
    assert line(lines, f"group {GROUP}:").startswith(f"❌ group {GROUP}: the bot is not an admin")
    assert line(lines, f"group {OTHER}:") == (
        f"❌ group {OTHER}: Telegram says 'Chat not found': add the bot to the group and make "
        "it an admin, or remove the group from the config file"
    )
    asked = sorted(
        (c.params["chat_id"], c.params["user_id"]) for c in api.calls_of("getChatMember")
    )
    assert asked == [(OTHER, BOT_ID), (GROUP, BOT_ID)]


def test_no_groups_yet_is_fine(
    tmp_path: Path, api: FakeBotAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    upgraded(tmp_path)
    code, lines = check(write_config(tmp_path, api), capsys)
    assert code == 0
    assert line(lines, "groups:").startswith("✅ groups: none yet: after the deploy, add the bot")


def set_webhook(api: FakeBotAPI, url: str, allowed: list[str] | None) -> None:
    async def go() -> None:
        async with Bot(TOKEN, base_url=f"{api.base_url}/bot") as bot:
            await bot.set_webhook(url, allowed_updates=allowed)

    asyncio.run(go())


@pytest.mark.parametrize(
    ("url", "allowed", "ok", "expected"),
    [
        (None, None, True, "no webhook set yet; opsbot run sets it (bot.example.com)"),
        (HOOK, Update.ALL_TYPES, True, "enabled on the webhook (bot.example.com)"),
        (HOOK, None, False, "the webhook does not ask for them (allowed_updates)"),
        (HOOK, ["message", "my_chat_member"], False, "the webhook does not ask for them"),
        ("https://old.example.org/hook", Update.ALL_TYPES, False, "the webhook points elsewhere"),
    ],
)
def test_chat_member_updates_in_webhook_mode(
    tmp_path: Path,
    api: FakeBotAPI,
    capsys: pytest.CaptureFixture[str],
    url: str | None,
    allowed: list[str] | None,
    ok: bool,
    expected: str,
) -> None:
    upgraded(tmp_path)
    if url:
        set_webhook(api, url, allowed)
    status, payload = api.answer("getWebhookInfo", {})
    assert problems(payload["result"], "WebhookInfo") == []
    telegram = f'mode = "webhook"\nwebhook_url = "{HOOK}"'
    code, lines = check(write_config(tmp_path, api, telegram=telegram), capsys)
    assert code == (0 if ok else 1)
    assert line(lines, "chat_member updates:").startswith(
        f"{'✅' if ok else '❌'} chat_member updates: {expected}"
    )


def test_polling_mode_mentions_a_webhook_left_behind(
    tmp_path: Path, api: FakeBotAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    upgraded(tmp_path)
    set_webhook(api, "https://old.example.org/hook", None)
    code, lines = check(write_config(tmp_path, api), capsys)
    assert code == 0
    assert "a webhook is set (old.example.org): opsbot run removes it" in line(
        lines, "chat_member updates:"
    )


@pytest.mark.parametrize("revision", [None, "0004"])
def test_database_not_migrated(
    tmp_path: Path, api: FakeBotAPI, capsys: pytest.CaptureFixture[str], revision: str | None
) -> None:
    if revision:
        upgraded(tmp_path, revision)
    else:
        (tmp_path / "opsbot.db").touch()  # an empty file: no schema
    code, lines = check(write_config(tmp_path, api), capsys)
    assert code == 1
    found = line(lines, "database:")
    assert found.startswith("❌ database: sqlite+aiosqlite:///")
    assert ("empty (no schema)" if revision is None else "at revision 0004") in found
    assert f"this version needs {head_revision()}: run opsbot db upgrade" in found


def test_database_file_missing_is_not_created(
    tmp_path: Path, api: FakeBotAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = check(write_config(tmp_path, api), capsys)
    assert code == 1
    assert line(lines, "database:") == (
        f"❌ database: no file at {tmp_path / 'opsbot.db'}: run opsbot db upgrade to create it "
        "(opsbot run also does)"
    )
    assert not (tmp_path / "opsbot.db").exists()


def test_database_unreachable_hides_the_password(
    tmp_path: Path, api: FakeBotAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql://opsbot:hunter2@127.0.0.1:1/opsbot"  # nothing listens on port 1
    code = main(["check", "--config", write_config(tmp_path, api, db_url=url)])
    out, err = capsys.readouterr()
    assert code == 1
    assert "❌ database: postgresql+asyncpg://opsbot:***@127.0.0.1:1/opsbot is unreachable" in out
    assert "hunter2" not in out + err
    assert "✅ token" in out  # the other checks still ran


def test_stored_timezone_that_is_not_a_zone(
    tmp_path: Path, api: FakeBotAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    upgraded(tmp_path, known={GROUP: {"title": "Camp", "timezone": "Mars/Olympus_Mons"}})
    code, lines = check(write_config(tmp_path, api), capsys)
    assert code == 1
    assert line(lines, "timezones:").startswith(
        f"❌ timezones: group {GROUP} has 'Mars/Olympus_Mons', not an IANA name"
    )
    assert "/settings timezone" in line(lines, "timezones:")


def test_no_cjk_font(
    tmp_path: Path,
    api: FakeBotAPI,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(charts, "cjk_font", lambda: None)
    upgraded(tmp_path)
    code, lines = check(write_config(tmp_path, api), capsys)
    assert code == 1
    found = line(lines, "CJK font:")
    assert found.startswith("❌ CJK font: none, so charts fall back to English titles")
    assert "fonts-noto-cjk" in found
    assert "fonts-wqy-microhei" in found
    # groups all in English: no font needed
    code, lines = check(write_config(tmp_path, api, extra='[defaults]\nlanguage = "en"\n'), capsys)
    assert code == 0
    assert line(lines, "CJK font:") == "✅ CJK font: none, and not needed (no group uses Chinese)"


def test_server_answers_about_the_bot_are_shaped_as_telegram_does(api: FakeBotAPI) -> None:
    status, me = api.answer("getMe", {})
    assert problems(me["result"], "User") == []
    assert {"can_join_groups", "can_read_all_group_messages", "supports_inline_queries"} <= set(
        me["result"]
    )
    status, admin = api.answer("getChatMember", {"chat_id": GROUP, "user_id": BOT_ID})
    assert problems(admin["result"], "ChatMember") == []
    api.admins[GROUP] = []
    status, member = api.answer("getChatMember", {"chat_id": GROUP, "user_id": BOT_ID})
    assert (status, member["result"]["status"]) == (200, "member")
    assert problems(member["result"], "ChatMember") == []
    status, missing = api.answer("getChatMember", {"chat_id": OTHER, "user_id": BOT_ID})
    assert (status, missing["description"]) == (400, "Bad Request: chat not found")


def test_version_prints_the_package_version() -> None:
    from importlib.metadata import version

    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert done.stdout == f"opsbot {version('opsbot')}\n"
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0


def test_a_telegram_error_on_a_later_call_is_a_line_not_a_traceback(
    tmp_path: Path, api: FakeBotAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    upgraded(tmp_path)
    api.fail_next("getWebhookInfo", error_code=400, description="Bad Request: try later")
    code, lines = check(write_config(tmp_path, api), capsys)
    assert code == 1
    assert line(lines, "chat_member updates:") == (
        "❌ chat_member updates: getWebhookInfo failed (Try later): try again"
    )
