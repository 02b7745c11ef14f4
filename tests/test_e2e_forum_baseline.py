"""The baseline without bot admins and hosts, and forum topics (SPEC 4, 9), end to end.

Every rule runs through the path a user takes: the real Application against the fake Bot
API server (live), or `opsbot import` of a Telegram Desktop export; the numbers are read
with `opsbot report --json`, on SQLite and PostgreSQL. A forum scenario is written once
and rendered both ways, and both paths must give the very same numbers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot import schedule
from bot.cli import main
from bot.config import load_config
from tests import export_factory as ef
from tests import tg
from tests.botapi_server import BOT_ID, TOKEN, FakeBotAPI
from tests.e2e import bot_running, settle

CHAT = -1004242  # the Bot API id of export 4242, a supergroup
DAY = "2026-11-18"  # ef.T0's day (UTC)
FORUM = tg.forum(CHAT, "Camp")
HOST = tg.user(1, "Host")
GUARD = tg.user(5, "Guard", is_bot=True)  # an anti-spam bot, admin of the group
ME = tg.user(BOT_ID, "opsbot", is_bot=True)
PEOPLE = {uid: tg.user(uid, name) for uid, name in ((10, "A"), (11, "B"), (12, "C"))}
PEOPLE |= {uid: tg.user(uid, name) for uid, name in ((13, "D"), (14, "E"))}
EVERYONE = {1: HOST, 5: GUARD} | PEOPLE


def write_config(tmp_path: Path, db_url: str, api: FakeBotAPI | None, hosts: str = "") -> str:
    path = tmp_path / "config.toml"
    telegram = f'token = "{TOKEN}"\napi_base_url = "{api.base_url}"\n' if api else ""
    path.write_text(
        f"[telegram]\n{telegram}"
        f'[storage]\nurl = "{db_url}"\n'
        '[defaults]\ntimezone = "UTC"\nlanguage = "en"\n'
        f'[groups."{CHAT}"]\nhosts = [{hosts}]\n'
    )
    return str(path)


def report(config: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """`opsbot report --json` of DAY."""
    capsys.readouterr()
    assert main(["report", "--chat", str(CHAT), "--date", DAY, "--json", "--config", config]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def numbers(rep: dict[str, Any]) -> dict[str, Any]:
    active = rep["active"]
    return {
        "joins": rep["joins"],
        "headcount_end": rep["headcount_end"],
        "audience": active["audience"],
        "response": active["response"]["users"],
        "interaction": active["interaction"]["users"],
    }


def bot_added(chat: dict[str, Any], ts: int) -> dict[str, Any]:
    return tg.bot_added(chat, HOST, ts, ME)


def admins() -> list[dict[str, Any]]:
    return [
        tg.member(HOST, "creator"),
        tg.member(GUARD, "administrator"),
        tg.member(ME, "administrator"),
    ]


def command(chat: dict[str, Any], mid: int, ts: int, text: str, **kw: Any) -> dict[str, Any]:
    word = text.split()[0]
    return tg.message(
        chat,
        mid,
        ts,
        HOST,
        text,
        entities=[{"type": "bot_command", "offset": 0, "length": len(word)}],
        **kw,
    )


# ---- the baseline (live) -------------------------------------------------------------


async def test_baseline_leaves_out_bot_admins_and_hosts_in_the_group(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """getChatMemberCount counts everyone: the bot, the creator, the admin bot Guard, the
    configured host 2 (in the group), member 10 and 19 others; configured host 3 is not
    in the group. A /hosts add of member 10 (in the group, no join seen) takes one more
    off; one of member 13 (who left unseen: getChatMember shows them gone) takes none;
    joins of 11 and 12 add two."""
    api = FakeBotAPI().start()
    try:
        api.chats[CHAT] = tg.group(CHAT, "Camp")
        api.admins[CHAT] = admins()
        api.members[(CHAT, 2)] = tg.member(tg.user(2, "Configured"), "member")
        api.members[(CHAT, 3)] = tg.member(tg.user(3, "Away"), "left")
        api.members[(CHAT, 10)] = tg.member(PEOPLE[10], "member")
        api.members[(CHAT, 13)] = tg.member(PEOPLE[13], "left")
        assert api.count_everyone(CHAT, others=19) == 24  # 19 + 1, 2, 5, 10 and the bot
        config = write_config(tmp_path, db_url, api, hosts="2, 3")
        group, t0 = tg.group(CHAT, "Camp"), ef.T0
        async with bot_running(load_config(config)):
            said = tg.message(group, 20, t0 + 60, PEOPLE[10], "hello")
            gone = tg.message(group, 22, t0 + 90, PEOPLE[13], "bye")
            api.push(
                bot_added(group, t0),
                said,
                gone,
                command(group, 21, t0 + 120, "/hosts add", reply_to=said["message"]),
                command(group, 23, t0 + 130, "/hosts add", reply_to=gone["message"]),
                *(
                    tg.chat_member(
                        group, u, t0 + 180 + i, tg.member(u, "left"), tg.member(u, "member")
                    )
                    for i, u in enumerate((PEOPLE[11], PEOPLE[12]))
                ),
            )
            await settle(api)
        reads = api.calls_of("getChatAdministrators")
        assert reads
        assert all(c.params.get("return_bots") is True for c in reads)
    finally:
        api.stop()
    # 24 - (bot, creator, Guard, host 2) = 20; - host 10 = 19 (not 13); + 2 joins = 21
    assert numbers(await asyncio.to_thread(report, config, capsys)) == {
        "joins": 2,
        "headcount_end": 21,
        "audience": 21,
        "response": 0,
        "interaction": 0,
    }


async def test_hosts_remove_gives_the_baseline_its_member_back(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """/hosts add then /hosts remove of member 10: a member again, counted once."""
    api = FakeBotAPI().start()
    try:
        api.chats[CHAT] = tg.group(CHAT, "Camp")
        api.admins[CHAT] = admins()
        api.members[(CHAT, 10)] = tg.member(PEOPLE[10], "member")
        api.count_everyone(CHAT, others=6)  # 6 + 10 + creator, Guard, bot
        config = write_config(tmp_path, db_url, api)
        group, t0 = tg.group(CHAT, "Camp"), ef.T0
        async with bot_running(load_config(config)) as app:
            said = tg.message(group, 20, t0 + 60, PEOPLE[10], "hello")
            api.push(
                bot_added(group, t0),
                said,
                command(group, 21, t0 + 120, "/hosts add", reply_to=said["message"]),
            )
            await settle(api)
            assert (await app.bot_data["repo"].chat(CHAT)).baseline_count == 6
            api.push(command(group, 22, t0 + 180, "/hosts remove", reply_to=said["message"]))
            await settle(api)
    finally:
        api.stop()
    assert numbers(await asyncio.to_thread(report, config, capsys))["headcount_end"] == 7


async def test_the_daily_drift_check_leaves_out_bot_admins_and_hosts(
    tmp_path: Path, db_url: str
) -> None:
    """Four more admin bots join after tracking began: Telegram's count grows by four, and
    the digest's re-read leaves them out (with Guard, the bot and host 2) again: no drift
    note. Reading admins without return_bots, it would report 10 members against our 4."""
    api = FakeBotAPI().start()
    try:
        api.chats[CHAT] = tg.group(CHAT, "Camp")
        api.admins[CHAT] = admins()
        api.members[(CHAT, 2)] = tg.member(tg.user(2, "Configured"), "member")
        api.count_everyone(CHAT, others=4)
        config = write_config(tmp_path, db_url, api, hosts="2")
        async with bot_running(load_config(config)) as app:
            api.push(bot_added(tg.group(CHAT, "Camp"), ef.T0))
            await settle(api)
            api.admins[CHAT] += [
                tg.member(tg.user(uid, "Helper", is_bot=True), "administrator")
                for uid in range(6, 10)
            ]
            assert api.count_everyone(CHAT, others=4) == 12
            now = datetime.fromtimestamp(ef.T0, UTC) + timedelta(days=1)
            assert await schedule.send_digest(app, CHAT, now)
            api.members[(CHAT, 2)] = tg.member(tg.user(2, "Configured"), "left")
            api.count_everyone(CHAT, others=8)  # host 2 left; 4 more members: a drift
            assert await schedule.send_digest(app, CHAT, now + timedelta(days=1))
        digests = [
            c.params["text"] for c in api.calls_of("sendMessage") if "📊" in c.params["text"]
        ]
    finally:
        api.stop()
    assert len(digests) == 2
    assert "Data quality" not in digests[0]
    assert "Data quality: Telegram counts 8 members, opsbot 4." in digests[1]


# ---- forum topics (live and import) --------------------------------------------------


@dataclass(frozen=True)
class Topic:
    mid: int
    dt: int
    name: str


@dataclass(frozen=True)
class Say:
    mid: int
    dt: int
    uid: int
    text: str
    topic: int | None = None  # a topic's mid; None: the General topic
    reply_to: int | None = None  # an explicit reply (the reply button)


Event = Topic | Say


def as_updates(events: Sequence[Event]) -> list[dict[str, Any]]:
    """The scenario as Telegram delivers it to a bot in a forum supergroup."""
    sent: dict[int, dict[str, Any]] = {}
    out = [bot_added(FORUM, ef.T0)]
    for ev in events:
        if isinstance(ev, Topic):
            update = tg.topic_created(FORUM, ev.mid, ef.T0 + ev.dt, HOST, ev.name)
        else:
            update = tg.message(
                FORUM,
                ev.mid,
                ef.T0 + ev.dt,
                EVERYONE[ev.uid],
                ev.text,
                topic=sent[ev.topic] if ev.topic is not None else None,
                reply_to=sent[ev.reply_to] if ev.reply_to is not None else None,
            )
        sent[ev.mid] = update["message"]
        out.append(update)
    return out


def as_export(events: Sequence[Event]) -> list[dict[str, Any]]:
    """The scenario as Telegram Desktop exports it: no topic field; a message sent in a
    topic names the topic's creation as its reply, an explicit reply names its target."""
    out = []
    for ev in events:
        if isinstance(ev, Topic):
            out.append(ef.topic_created(ev.mid, ev.dt, ("Host", 1), ev.name))
        else:
            person = (EVERYONE[ev.uid]["first_name"], ev.uid)
            out.append(ef.message(ev.mid, ev.dt, person, ev.text, ev.reply_to or ev.topic))
    return out


async def run_live(
    events: Sequence[Event], tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> dict[str, Any]:
    api = FakeBotAPI().start()
    try:
        api.chats[CHAT] = FORUM
        api.admins[CHAT] = admins()
        # members first seen posting were in the group before tracking: the baseline
        posters = {e.uid for e in events if isinstance(e, Say)} - {1, 5}
        api.count_everyone(CHAT, others=len(posters))
        config = write_config(tmp_path, db_url, api)
        async with bot_running(load_config(config)):
            api.push(*as_updates(events))
            await settle(api)
    finally:
        api.stop()
    return numbers(await asyncio.to_thread(report, config, capsys))


def run_import(
    events: Sequence[Event], tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> dict[str, Any]:
    config = write_config(tmp_path, db_url, None)
    export = ef.write(tmp_path, ef.chat(as_export(events)))
    assert main(["import", str(export), "--host", "1", "--bot", "5", "--config", config]) == 0
    return numbers(report(config, capsys))


async def both_paths(
    path: str,
    events: Sequence[Event],
    tmp_path: Path,
    db_url: str,
    capsys: pytest.CaptureFixture[str],
) -> dict[str, Any]:
    if path == "live":
        return await run_live(events, tmp_path, db_url, capsys)
    return await asyncio.to_thread(run_import, events, tmp_path, db_url, capsys)


PATHS = pytest.mark.parametrize("path", ["live", "import"])
HOMEWORK, CHAT_TOPIC = 100, 200


@PATHS
async def test_a_topic_message_is_no_reply_and_answers_in_its_own_topic_only(
    path: str, tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A asks in Homework; B (Chat topic), C (General) and the admin bot Guard speak in
    between, which answers nothing; D answers in Homework without the reply button. E's
    question in General is not answered by B's message in Chat."""
    events = [
        Topic(HOMEWORK, 0, "Homework"),
        Topic(CHAT_TOPIC, 1, "Chat"),
        Say(301, 60, 10, "how do I hand in?", HOMEWORK),
        Say(302, 70, 11, "hello all", CHAT_TOPIC),
        Say(303, 80, 12, "morning"),  # General
        Say(304, 85, 5, "welcome!", HOMEWORK),  # a bot: opens and closes nothing
        Say(305, 90, 13, "see the pinned post", HOMEWORK),  # answers A
        Say(306, 100, 14, "is there a deadline?"),  # General
        Say(307, 110, 11, "thanks", CHAT_TOPIC),  # another topic: no answer to E
    ]
    assert await both_paths(path, events, tmp_path, db_url, capsys) == {
        "joins": 0,
        "headcount_end": 5,
        "audience": 5,
        "response": 0,
        "interaction": 2,  # A and D
    }


@PATHS
async def test_a_host_post_closes_the_windows_of_its_own_topic_only(
    path: str, tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A asks in Homework, B in Chat; the host posts in Homework; C's Homework message
    answers nothing (closed), D's Chat message answers B (still open)."""
    events = [
        Topic(HOMEWORK, 0, "Homework"),
        Topic(CHAT_TOPIC, 1, "Chat"),
        Say(301, 60, 10, "how do I hand in?", HOMEWORK),
        Say(302, 70, 11, "anyone around?", CHAT_TOPIC),
        Say(303, 80, 1, "read the guide", HOMEWORK),  # the host, in Homework
        Say(304, 90, 12, "ok", HOMEWORK),
        Say(305, 100, 13, "me", CHAT_TOPIC),
        Say(306, 110, 14, "hi"),
    ]
    assert await both_paths(path, events, tmp_path, db_url, capsys) == {
        "joins": 0,
        "headcount_end": 5,
        "audience": 5,
        "response": 0,
        "interaction": 2,  # B and D
    }


@PATHS
async def test_an_explicit_reply_counts_across_topics(
    path: str, tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """B, in Chat, replies to the host's Homework post: response. C, in General, replies
    to A's Homework message: interaction for both. D replies to E within Homework."""
    events = [
        Topic(HOMEWORK, 0, "Homework"),
        Topic(CHAT_TOPIC, 1, "Chat"),
        Say(301, 60, 1, "day 1: post your goal", HOMEWORK),
        Say(302, 70, 10, "my goal is 5k", HOMEWORK),
        Say(303, 80, 11, "mine: 10k", CHAT_TOPIC, reply_to=301),
        Say(304, 90, 12, "nice", reply_to=302),  # General -> Homework
        Say(305, 100, 14, "what about weekends?", HOMEWORK),
        Say(306, 110, 13, "same", HOMEWORK, reply_to=305),  # a reply, in the topic
    ]
    assert await both_paths(path, events, tmp_path, db_url, capsys) == {
        "joins": 0,
        "headcount_end": 5,
        "audience": 5,
        "response": 1,  # B
        "interaction": 4,  # A, C, D, E
    }


@PATHS
async def test_a_reply_is_in_the_topic_of_its_target(
    path: str, tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An export keeps no topic for a reply: it is in the topic of the message it replies
    to. The host's reply to D's reply to A's Homework question is in Homework, so it
    closes Homework's windows: C's Homework message answers nothing; E answers B in Chat."""
    events = [
        Topic(HOMEWORK, 0, "Homework"),
        Topic(CHAT_TOPIC, 1, "Chat"),
        Say(301, 60, 10, "how do I hand in?", HOMEWORK),
        Say(302, 65, 11, "where is it?", CHAT_TOPIC),
        Say(303, 70, 13, "good question", HOMEWORK, reply_to=301),  # a member reply
        Say(304, 80, 1, "see the guide", HOMEWORK, reply_to=303),  # the host's reply
        Say(305, 90, 12, "ok", HOMEWORK),  # closed by the host's reply: no answer
        Say(306, 100, 14, "here", CHAT_TOPIC),  # answers B
    ]
    assert await both_paths(path, events, tmp_path, db_url, capsys) == {
        "joins": 0,
        "headcount_end": 5,
        "audience": 5,
        "response": 0,
        "interaction": 4,  # A and D (a reply), B and E (an answer); not C
    }


async def test_commands_are_answered_in_their_topic(tmp_path: Path, db_url: str) -> None:
    """/retention in a topic is answered in that topic; in General, without a thread id.
    /hosts add sent in a topic without the reply button names nobody (the topic's
    creation message is no reply): the usage line, in the topic."""
    api = FakeBotAPI().start()
    try:
        api.chats[CHAT] = FORUM
        api.admins[CHAT] = admins()
        api.count_everyone(CHAT, others=3)
        config = write_config(tmp_path, db_url, api)
        root = tg.topic_created(FORUM, HOMEWORK, ef.T0 + 1, HOST, "Homework")
        async with bot_running(load_config(config)) as app:
            api.push(
                bot_added(FORUM, ef.T0),
                root,
                command(FORUM, 301, ef.T0 + 60, "/retention", topic=root["message"]),
                command(FORUM, 302, ef.T0 + 70, "/retention"),
                command(FORUM, 303, ef.T0 + 80, "/hosts add", topic=root["message"]),
            )
            await settle(api)
            assert await app.bot_data["repo"].manual_hosts(CHAT) == set()
        sent = [c.params for c in api.calls_of("sendMessage") if int(c.params["chat_id"]) == CHAT]
    finally:
        api.stop()
    assert [p.get("message_thread_id") for p in sent] == [HOMEWORK, None, HOMEWORK]
    assert sent[2]["text"].startswith("Usage: /hosts, or reply")
