"""Commands in chat through the real Application and the fake Bot API server (SPEC 7)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.context import OpsApplication
from tests import tg
from tests.botapi_server import BOT_ID, FakeBotAPI
from tests.e2e import bot_running, make_config, settle

CHAT = -1001234
GROUP = tg.group(CHAT, "Camp")
TZ = ZoneInfo("Asia/Shanghai")
HOST, BOT_USER = tg.user(1, "Host"), tg.user(BOT_ID, "opsbot", True)
ALICE, BOB, CAROL = tg.user(10, "Alice"), tg.user(11, "Bob"), tg.user(12, "Carol")
_mid = iter(range(1000, 100000))


def local(days_ago: int, hour: int, minute: int = 0) -> int:
    today = datetime.now(TZ).date()
    moment = datetime.combine(today - timedelta(days=days_ago), time(hour, minute), TZ)
    return int(moment.timestamp())


def join(user: dict[str, Any], ts: int) -> dict[str, Any]:
    return tg.chat_member(GROUP, user, ts, tg.member(user, "left"), tg.member(user, "member"))


def leave(user: dict[str, Any], ts: int) -> dict[str, Any]:
    return tg.chat_member(GROUP, user, ts, tg.member(user, "member"), tg.member(user, "left"))


def command(
    text: str,
    sender: dict[str, Any],
    chat: dict[str, Any] = GROUP,
    reply_to: dict[str, Any] | None = None,
) -> dict[str, Any]:
    word = text.split()[0]
    return tg.message(
        chat,
        next(_mid),
        int(datetime.now(UTC).timestamp()),
        sender,
        text,
        reply_to=reply_to,
        entities=[{"type": "bot_command", "offset": 0, "length": len(word)}],
    )


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    server = FakeBotAPI().start()
    server.admins[CHAT] = [tg.member(HOST, "creator"), tg.member(BOT_USER, "administrator")]
    server.member_counts[CHAT] = 22  # 20 members, the creator and the bot
    server.chats[CHAT] = GROUP
    yield server
    server.stop()


@pytest.fixture
async def bot(api: FakeBotAPI, db_url: str) -> AsyncIterator[OpsApplication]:
    async with bot_running(make_config(api, db_url)) as app:
        api.push(
            tg.bot_added(GROUP, HOST, local(3, 8), BOT_USER),
            join(ALICE, local(2, 12)),
            join(BOB, local(2, 12, 5)),
            leave(BOB, local(2, 12, 35)),  # gone within the hour
            join(CAROL, local(1, 20)),
        )
        await settle(api)
        yield app


async def replies(api: FakeBotAPI, *updates: dict[str, Any]) -> list[str]:
    before = len(api.calls_of("sendMessage"))
    api.push(*updates)
    await settle(api)
    sent = api.calls_of("sendMessage")[before:]
    return [c.params["text"] for c in sent if int(c.params["chat_id"]) == CHAT]


async def test_retention_table_shows_rates_counts_and_pooled(
    api: FakeBotAPI, bot: OpsApplication
) -> None:
    [text] = await replies(api, command("/retention 3", HOST))
    day2 = (datetime.now(TZ).date() - timedelta(days=2)).strftime("%m-%d")
    row = next(line for line in text.splitlines() if line.startswith(day2))
    assert row.split()[:4] == [day2, "2", "50.0%", "(1/2)"]  # 1h: Bob left after 30 min
    assert "合计" in text  # the pooled row, in the group's language (zh by default)
    assert text.startswith("<pre>")


async def test_non_admin_cannot_set_targets_and_admin_can(
    api: FakeBotAPI, bot: OpsApplication
) -> None:
    refused = await replies(api, command("/settarget 次日留存 80%", ALICE))
    assert refused == ["只有本群管理员可以使用这个命令。"]
    [done] = await replies(api, command("/settarget 次日留存 80%", HOST))
    assert done == "目标已设定：次日留存 ≥ 80%"
    [targets] = await replies(api, command("/targets", HOST))
    assert "次日留存 ≥ 80%" in targets
    [off] = await replies(api, command("/settarget next_day off", HOST))
    assert off == "目标已关闭：次日留存"
    [none] = await replies(api, command("/targets", HOST))
    assert "尚未设定目标" in none


@pytest.mark.parametrize(
    ("text", "usage"),
    [
        ("/retention abc", "/retention [天数 1-90]"),
        ("/retention 500", "/retention [天数 1-90]"),
        ("/active 0", "/active [天数 1-90]"),
        ("/report yesterday", "/report [YYYY-MM-DD]"),
        ("/trend", "/trend <指标>"),
        ("/trend weekly", "/trend <指标>"),
        ("/settarget", "/settarget <指标>"),
        ("/settarget next_day lots", "/settarget <指标>"),
        ("/settings colour red", "/settings [timezone"),
        ("/hosts add", "/hosts"),
    ],
)
async def test_bad_arguments_get_their_usage_line(
    api: FakeBotAPI, bot: OpsApplication, text: str, usage: str
) -> None:
    [reply] = await replies(api, command(text, HOST))
    assert usage in reply


async def test_settings_change_language_and_replies_follow(
    api: FakeBotAPI, bot: OpsApplication
) -> None:
    [saved] = await replies(api, command("/settings language en", HOST))
    assert saved == "Saved: language = en"
    [text] = await replies(api, command("/active 2", HOST))
    assert "Active members, last 2 days (Asia/Shanghai)" in text
    assert "mean" in text


async def test_trend_sends_a_png_chart(api: FakeBotAPI, bot: OpsApplication) -> None:
    api.push(command("/trend retention_1h 7", HOST))
    await settle(api)
    [photo] = api.calls_of("sendPhoto")
    png = photo.files["photo"]
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert 600 <= width <= 2000
    assert 300 <= height <= 1200


async def test_export_goes_privately_and_matches_events(
    api: FakeBotAPI, bot: OpsApplication
) -> None:
    [note] = await replies(api, command("/export 7", HOST))
    assert note == "导出文件已私聊发给你。"
    docs = api.calls_of("sendDocument")
    assert {int(d.params["chat_id"]) for d in docs} == {1}  # the admin, never the group
    files = [data for d in docs for data in d.files.values()]
    members = next(v for v in files if b"user_id" in v)
    rows = list(csv.DictReader(io.StringIO(members.decode("utf-8-sig"))))
    assert [(r["user_id"], r["event"]) for r in rows] == [
        ("10", "join"),
        ("11", "join"),
        ("11", "leave"),
        ("12", "join"),
    ]
    daily = next(v for v in files if b"audience" in v)
    days = list(csv.DictReader(io.StringIO(daily.decode("utf-8-sig"))))
    # /export 7, but tracking began 3 days ago: those 3 days and today, today partial
    assert len(days) == 4
    assert [d["joins"] for d in days[-3:]] == ["2", "1", "0"]
    assert [d["partial"] for d in days] == ["no", "no", "no", "yes"]


async def test_hosts_add_by_reply(api: FakeBotAPI, bot: OpsApplication) -> None:
    post = tg.message(GROUP, next(_mid), local(0, 0, 1), CAROL, "hello")["message"]
    [added] = await replies(api, {"message": post}, command("/hosts add", HOST, reply_to=post))
    assert added == "已添加为主持人：Carol"
    [listing] = await replies(api, command("/hosts", HOST))
    assert "Carol (12)" in listing
    assert "Host (1)" in listing


async def test_private_chat_picker_lists_only_the_users_groups_and_runs_there(
    api: FakeBotAPI, bot: OpsApplication
) -> None:
    other = tg.group(-100999, "Someone else's group")
    api.admins[-100999] = [tg.member(tg.user(77), "creator"), tg.member(BOT_USER, "administrator")]
    api.member_counts[-100999] = 5
    api.push(
        tg.chat_member(
            other,
            tg.user(77),
            local(1, 9),
            tg.member(BOT_USER, "left"),
            tg.member(BOT_USER, "administrator"),
            mine=True,
        )
    )
    private = {"id": 1, "type": "private", "first_name": "Host"}
    api.push(command("/retention 3", HOST, chat=private))
    await settle(api)
    picker = [c for c in api.calls_of("sendMessage") if int(c.params["chat_id"]) == 1][-1]
    buttons = [b for row in picker.params["reply_markup"]["inline_keyboard"] for b in row]
    assert [b["text"] for b in buttons] == ["Camp"]  # not the group where they are no admin
    assert buttons[0]["callback_data"] == f"pick:retention:{CHAT}:3"
    # pressing it runs the command for that group, in the private chat
    query = {
        "id": "q1",
        "from": HOST,
        "chat_instance": "ci",
        "data": buttons[0]["callback_data"],
        "message": tg.message(private, 555, local(0, 0), BOT_USER, "选择一个群：")["message"],
    }
    forged = dict(query, id="q2", data="pick:retention:-100999:3")
    api.push({"callback_query": query}, {"callback_query": forged})
    await settle(api)
    sent = [c.params["text"] for c in api.calls_of("sendMessage") if int(c.params["chat_id"]) == 1]
    assert "留存，最近 3 天" in sent[-2]
    assert sent[-1] == "只有本群管理员可以使用这个命令。"  # forged data reaches nothing
    assert len(api.calls_of("answerCallbackQuery")) == 2
