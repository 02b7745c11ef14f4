"""Issue 17's leftovers, each through the path a user takes: a long --export-timezone, the
group's chat id in /start, a Bot API lost while polling, and a report for a day before
tracking began."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.check import check_timezones
from bot.cli import main
from bot.config import Config, Target
from tests import export_factory as ef
from tests import tg
from tests.botapi_server import BOT_ID, TOKEN, FakeBotAPI, _Server
from tests.e2e import bot_running, make_config, settle
from tests.test_kill_restart import stored

CHAT = -1001717
GROUP = tg.group(CHAT, "Camp")
HOST, BOT_USER = tg.user(1, "Host"), tg.user(BOT_ID, "opsbot", True)
ALICE = tg.user(10, "Alice")
TZ = ZoneInfo("Asia/Shanghai")
MESSAGE_IDS = itertools.count(1000)
LONG_ZONE = "x" * 300  # ZoneInfo raises OSError (file name too long) on it


def command(text: str, chat: dict[str, Any] = GROUP, sender: dict[str, Any] = HOST) -> Any:
    return tg.message(
        chat,
        next(MESSAGE_IDS),
        int(datetime.now(UTC).timestamp()),
        sender,
        text,
        entities=[{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}],
    )


def bot_added(ts: int) -> Any:
    return tg.bot_added(GROUP, HOST, ts, BOT_USER)


def group_api() -> FakeBotAPI:
    api = FakeBotAPI().start()
    api.admins[CHAT] = [tg.member(HOST, "creator"), tg.member(BOT_USER, "administrator")]
    api.member_counts[CHAT] = 12
    api.chats[CHAT] = GROUP
    return api


def replies_in(api: FakeBotAPI, chat_id: int) -> list[str]:
    return [
        c.params["text"]
        for c in api.calls_of("sendMessage")
        if int(c.params["chat_id"]) == chat_id
    ]


# ---- 1. a timezone name from the user never reaches ZoneInfo unchecked ----------------


@pytest.mark.parametrize("zone", [LONG_ZONE, "Mars/Olympus", "../../etc/passwd", "Asia/"])
def test_a_bad_export_timezone_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], zone: str
) -> None:
    database = tmp_path / "new.db"
    cfg = tmp_path / "opsbot.toml"
    cfg.write_text(f'[storage]\nurl = "sqlite:///{database}"\n')
    export = ef.write(tmp_path, ef.chat(ef.camp_day()))
    argv = ["import", str(export), "--export-timezone", zone, "--config", str(cfg)]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("opsbot: import failed, nothing was changed: --export-timezone: ")
    assert "unknown timezone" in err
    assert len(err) < 200  # the 300-character word is quoted short
    assert "Traceback" not in err
    assert not database.exists()  # refused before a database is made


def test_opsbot_check_reports_a_long_stored_timezone_instead_of_failing() -> None:
    line = check_timezones(Config(token=TOKEN), {CHAT: ("Camp", LONG_ZONE, "en")})
    assert not line.ok
    assert f"group {CHAT} has 'xxxxxxxx" in line.text
    assert len(line.text) < 400


# ---- 2. /start and /help in a group print its chat id ---------------------------------


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        ("en", f'• this group\'s chat id is {CHAT}: its settings go under [groups."{CHAT}"]'),
        ("zh", f'• 本群的 chat id 是 {CHAT}：配置文件里本群的设置写在 [groups."{CHAT}"] 下'),
    ],
)
async def test_start_and_help_in_a_group_print_its_chat_id(
    db_url: str, lang: str, expected: str
) -> None:
    api = group_api()
    owner = {"id": 31, "type": "private", "first_name": "Owner"}
    try:
        async with bot_running(make_config(api, db_url, language=lang)):
            api.push(bot_added(int(time.time()) - 60), command("/start"), command("/help"))
            api.push(command("/start", owner, tg.user(31, "Owner")))
            await settle(api)
        in_group = replies_in(api, CHAT)
        private = replies_in(api, 31)
    finally:
        api.stop()
    assert len(in_group) == 2
    for reply in in_group:
        [line] = [x for x in reply.splitlines() if str(CHAT) in x]
        assert line.startswith(expected), line
    [reply] = private
    assert "chat id" not in reply  # a private chat has no group id to show


# ---- 3. polling that loses the Bot API says so, once, and once when it is back --------


def wait_for(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def outage(api: FakeBotAPI, seconds: float) -> None:
    """Connections refused for `seconds`, then the same server (same updates, same offset)
    answers again on the same port, as Telegram does after a network cut."""
    port = api.server.server_address[1]
    api.stop()
    time.sleep(seconds)
    api.server = _Server(("127.0.0.1", port), api._handler())
    api.thread = threading.Thread(target=api.server.serve_forever, daemon=True)
    api.thread.start()


@pytest.mark.parametrize(
    ("cut", "reason"),
    [
        # refused; or a poll in flight when the server went away
        (
            "refused",
            r"(ConnectError: All connection attempts failed|ReadError|RemoteProtocolError)",
        ),
        ("502", "NetworkError: Bad Gateway"),  # a proxy or front end answering for it
    ],
)
async def test_polling_logs_a_lost_bot_api_once_and_its_return_once(
    db_url: str, caplog: pytest.LogCaptureFixture, cut: str, reason: str
) -> None:
    caplog.set_level(logging.INFO)
    api = group_api()
    t0 = int(time.time()) - 600
    try:
        async with bot_running(make_config(api, db_url)):
            api.push(bot_added(t0))
            await settle(api)
            assert not [r for r in caplog.records if "the Bot API at" in r.getMessage()]
            if cut == "refused":
                await asyncio.to_thread(outage, api, 2.0)
            else:
                api.fail_next("getUpdates", count=4, error_code=502, description="Bad Gateway")
                await asyncio.to_thread(wait_for, lambda: api.failures["getUpdates"] == [])
            api.push(
                tg.chat_member(
                    GROUP, ALICE, t0 + 60, tg.member(ALICE, "left"), tg.member(ALICE, "member")
                ),
                tg.message(GROUP, 5, t0 + 120, ALICE, "hello"),
            )
            await settle(api, wait_s=40)
    finally:
        api.stop()
    lines = [r.getMessage() for r in caplog.records if "the Bot API at" in r.getMessage()]
    assert len(lines) == 2, lines  # exactly these two
    lost, back = lines
    assert re.fullmatch(
        rf"cannot reach the Bot API at {re.escape(api.base_url)}: {reason}[^\n]*; retrying", lost
    ), lost
    assert back.startswith(f"reached the Bot API at {api.base_url} again after ")
    assert TOKEN.split(":")[1] not in caplog.text
    rows = await stored(db_url)
    assert [(r[0], r[1]) for r in rows["membership"]] == [(10, "join")]
    assert [(r[0], r[2]) for r in rows["messages"]] == [(5, 10)]


# ---- 4. a day before tracking began: no rates, no target missed, one line saying why ----


def local_ts(days_ago: int, hour: int) -> int:
    day = datetime.now(TZ).date() - timedelta(days=days_ago)
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=TZ).timestamp())


TARGETS = (Target("retention_day1", 0.8), Target("response_rate", 0.2, "last 7"))


@pytest.mark.parametrize(
    ("lang", "line"),
    [
        ("en", "opsbot was not tracking this group yet on {day}: that day has no rates."),
        ("zh", "{day} 那天 opsbot 还没有开始记录本群：当天没有比率。"),
    ],
)
async def test_a_day_before_tracking_has_no_rates_in_chat_and_on_the_terminal(
    db_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    lang: str,
    line: str,
) -> None:
    api = group_api()
    before = (datetime.now(TZ).date() - timedelta(days=5)).isoformat()
    tracked = (datetime.now(TZ).date() - timedelta(days=1)).isoformat()
    try:
        config = make_config(api, db_url, language=lang, targets=TARGETS)
        async with bot_running(config):
            api.push(bot_added(local_ts(2, 9)), command(f"/report {before}"))
            api.push(command(f"/report {tracked}"))
            await settle(api)
        early, late = replies_in(api, CHAT)
    finally:
        api.stop()
    assert early.splitlines()[1] == line.format(day=before)
    assert "❌" not in early
    assert "✅" not in early
    assert line.format(day=tracked) not in late
    assert "opsbot" not in late.splitlines()[1]

    cfg = tmp_path / "opsbot.toml"
    cfg.write_text(
        f'[storage]\nurl = "{db_url}"\n[defaults]\nlanguage = "{lang}"\n'
        '[defaults.targets]\nretention_day1 = "80%"\n'
        'response_rate = { value = "20%", range = "last 7" }\n'
    )
    base = ["report", "--chat", str(CHAT), "--date", before, "--config", str(cfg)]
    assert await asyncio.to_thread(main, [*base, "--json"]) == 0  # its own event loop
    report = json.loads(capsys.readouterr().out)
    assert {k: v["rate"] for k, v in report["retention"].items()} == {
        "1h": None,
        "day0": None,
        "day1": None,
    }
    assert report["active"]["response"]["rate"] is None
    assert report["active"]["interaction"]["rate"] is None
    assert [(t["value"], t["met"]) for t in report["targets"]] == [(None, None), (None, None)]
    assert await asyncio.to_thread(main, base) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[1] == line.format(day=before)
    assert "❌" not in text
