"""Imports of exports shaped as Telegram Desktop really writes them (SPEC 9), through the
command line (`opsbot import`, then `opsbot report --json`), on SQLite and PostgreSQL:
people named without an id in `invite_members` / `remove_members`, and the linked
channel's posts (automatic forwards, and posts sent as the channel)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.importer import NAME_ONLY_BASE, automatic_forward, linked_channel_id, name_only_id
from storage.repo import Repo
from tests import export_factory as ef
from tests import tg
from tests.botapi_server import BOT_ID, FakeBotAPI
from tests.e2e import bot_running, make_config, settle
from tests.export_factory import at

CHAT = -1004242  # the factory's private_supergroup 4242
DAY = "2026-11-18"  # T0 is 19:06 in Asia/Shanghai (the default timezone); all items that day
HOST, ANN, BEN, CAT = ("Host", 1), ("Ann", 10), ("Ben", 11), ("Cat", 12)
ZOE, YAN = ("Zoe Lee", 20), ("Yan", 21)
NEWS, ADS = ("Camp News", 555), ("Deals", 999)  # channels: (title, export id)


class Cli:
    """`opsbot …` against one database, run as a user would (its own event loop)."""

    def __init__(self, tmp_path: Path, db_url: str, name: str = "config.toml") -> None:
        self.tmp_path = tmp_path
        self.config = tmp_path / name
        self.config.write_text(f'[storage]\nurl = "{db_url}"\n')

    async def run(self, *argv: str) -> int:
        return await asyncio.to_thread(main, [*argv, "--config", str(self.config)])

    async def import_(
        self, capsys: pytest.CaptureFixture[str], items: list[dict[str, Any]], *flags: str
    ) -> list[str]:
        path = ef.write(self.tmp_path, ef.chat(items), f"export{len(items)}.json")
        assert await self.run("import", str(path), "--host", "1", *flags) == 0
        return capsys.readouterr().out.splitlines()

    async def report(
        self, capsys: pytest.CaptureFixture[str], chat_id: int = CHAT
    ) -> dict[str, Any]:
        assert await self.run("report", "--chat", str(chat_id), "--date", DAY, "--json") == 0
        report: dict[str, Any] = json.loads(capsys.readouterr().out)
        return report


def numbers(report: dict[str, Any]) -> dict[str, Any]:
    """The report's people numbers: joins, leaves, head-count, retention, activity."""
    active = report["active"]
    return {
        "joins": report["joins"],
        "leaves": report["leaves"],
        "headcount_end": report["headcount_end"],
        "retention": {w: (r["retained"], r["matured"]) for w, r in report["retention"].items()},
        "audience": active["audience"],
        "response": active["response"]["users"],
        "interaction": active["interaction"]["users"],
    }


# ---- people known by name only --------------------------------------------------------


def camp_by_name(with_ids: bool) -> list[dict[str, Any]]:
    """Ann and Ben from the start; the host adds Zoe and Yan and later removes Zoe. With
    ids: the same history, as if Zoe and Yan had joined and Zoe left on their own."""
    if with_ids:
        joins = [ef.join_by_link(3, 60, ZOE), ef.join_by_link(4, 60, YAN)]
        leave = ef.remove(8, 1800, ZOE, [ZOE[0]])
    else:
        joins = [ef.invite(3, 60, HOST, [ZOE[0], YAN[0]])]
        leave = ef.remove(8, 1800, HOST, [ZOE[0]])
    return [
        ef.create_group(1, 0, HOST, ["Host", "Ann", "Ben"]),
        *joins,
        ef.message(5, 120, HOST, "Day 1: reply with your goal"),
        ef.message(6, 180, ANN, "ship it", reply_to=5),
        ef.message(7, 240, BEN, "how do I submit?"),
        leave,
    ]


# Ann, Ben (create_group), Zoe and Yan (joined at +1 min); Zoe out at +30 min
CAMP_BY_NAME = {
    "joins": 2,
    "leaves": 1,
    "headcount_end": 3,
    "retention": {"1h": (1, 2), "day0": (1, 2), "day1": (0, 0)},
    "audience": 4,
    "response": 1,
    "interaction": 0,
}


@pytest.mark.parametrize("with_ids", [False, True], ids=["by-name", "with-ids"])
async def test_name_only_joins_and_leaves_count_as_if_they_had_ids(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str], with_ids: bool
) -> None:
    cli = Cli(tmp_path, db_url)
    summary = await cli.import_(capsys, camp_by_name(with_ids))
    assert numbers(await cli.report(capsys)) == CAMP_BY_NAME
    assert ("by name   2 people known by name only" in summary) != with_ids
    repo = await Repo.open(db_url)
    try:
        people = {e.user_id for e in (await repo.history(CHAT)).membership}
    finally:
        await repo.close()
    if with_ids:
        assert people == {20, 21}
    else:  # ids of their own, beyond every Telegram user id
        assert people == {name_only_id(CHAT, "Zoe Lee"), name_only_id(CHAT, "Yan")}
        assert min(people) >= NAME_ONLY_BASE > 2**52


async def test_a_name_shown_with_an_id_elsewhere_in_the_export_is_that_person(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    items = [
        *camp_by_name(with_ids=False),
        ef.message(9, 1900, ZOE, "I was removed by mistake"),  # Zoe's id, after her leave
        ef.invite(10, 2000, HOST, [ZOE[0]]),  # … and she is added back
    ]
    cli = Cli(tmp_path, db_url)
    summary = await cli.import_(capsys, items)
    assert "by name   1 person known by name only" in summary  # Yan
    repo = await Repo.open(db_url)
    try:
        h = await repo.history(CHAT)
    finally:
        await repo.close()
    zoe = [(str(e.kind), e.ts_utc) for e in h.membership if e.user_id == 20]
    assert zoe == [("join", at(60)), ("leave", at(1800)), ("join", at(2000))]
    # Zoe is back before 1 h: retained; she posts after her leave, as a member, with no
    # extra join or baseline entry
    assert numbers(await cli.report(capsys)) == CAMP_BY_NAME | {
        "joins": 2,
        "headcount_end": 4,
        "retention": {"1h": (2, 2), "day0": (2, 2), "day1": (0, 0)},  # back before 1 h
    }


async def test_a_name_the_database_knows_in_the_group_is_that_user(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # the live bot, added two days before, saw Zoe Lee (77) join the day before, and
    # another Zoe Lee (78) join another group
    api = FakeBotAPI().start()
    try:
        camp, elsewhere = tg.group(CHAT, "Camp"), tg.group(-1009, "Elsewhere")
        host, bot = tg.user(1, "Host"), tg.user(BOT_ID, "opsbot", True)
        zoe, other = (
            {"id": u, "is_bot": False, "first_name": "Zoe", "last_name": "Lee"} for u in (77, 78)
        )
        api.admins[CHAT] = [tg.member(host, "creator"), tg.member(bot, "administrator")]
        api.member_counts[CHAT] = 4  # the bot, the host and two members
        t = int(at(0).timestamp())
        async with bot_running(make_config(api, db_url)):
            for group, who in ((camp, zoe), (elsewhere, other)):
                added = (tg.member(bot, "left"), tg.member(bot, "administrator"))
                api.push(
                    tg.chat_member(group, host, t - 2 * 86400, *added, mine=True),
                    tg.chat_member(
                        group, who, t - 86400, tg.member(who, "left"), tg.member(who, "member")
                    ),
                )
            await settle(api)
    finally:
        api.stop()
    items = [
        # the export goes back to Zoe's join, named only (the host added her): the live
        # bot saw it (20 s off): stored once
        ef.invite(1, 20 - 86400, HOST, [ZOE[0]]),
        ef.message(2, 0, HOST, "Day 2: reply with your goal"),
        ef.message(3, 60, ANN, "done", reply_to=2),
        ef.remove(4, 600, HOST, [ZOE[0]]),  # Zoe Lee is removed: the user 77
    ]
    cli = Cli(tmp_path, db_url)
    summary = await cli.import_(capsys, items)
    assert "by name   1 person known by name only (1 matched a known user)" in summary
    assert "skipped   1 × joins/leaves already stored (same event within 60 s)" in summary
    report = numbers(await cli.report(capsys))
    # Ann was a member from before; baseline 2 (the live bot's) + Zoe's join = 3 in at
    # the start of the day; Zoe's cohort (the day before) is lost at the end of today
    assert report == {
        "joins": 0,
        "leaves": 1,
        "headcount_end": 2,
        "retention": {"1h": (0, 0), "day0": (0, 0), "day1": (0, 1)},
        "audience": 3,
        "response": 1,
        "interaction": 0,
    }


async def test_names_two_people_and_one_person_named_twice(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two names are two people; one name (a deleted account's `null` too) is one person
    throughout: the numbers are those of the same history written with ids."""

    def history(with_ids: bool) -> list[dict[str, Any]]:
        zoe: Any = ZOE[0]
        gone: Any = None  # a deleted account: Telegram Desktop writes its name as null
        if with_ids:  # the same people with ids (as if they had joined and left themselves)
            return [
                ef.create_group(1, 0, HOST, ["Host", "Ann"]),
                ef.join_by_link(2, 60, ZOE),
                ef.join_by_link(3, 60, YAN),
                ef.join_by_link(4, 90, ("Gone", 30)),
                ef.remove(5, 600, ZOE, [ZOE[0]]),
                ef.join_by_link(6, 900, ZOE),  # back the same day: one cohort entry
                ef.remove(7, 1200, ("Gone", 30), ["Gone"]),
                ef.message(8, 1300, ANN, "hi"),
            ]
        return [
            ef.create_group(1, 0, HOST, ["Host", "Ann"]),
            ef.invite(2, 60, HOST, [zoe, YAN[0]]),
            ef.invite(4, 90, HOST, [gone]),
            ef.remove(5, 600, HOST, [zoe]),
            ef.invite(6, 900, HOST, [zoe]),
            ef.remove(7, 1200, HOST, [gone]),
            ef.message(8, 1300, ANN, "hi"),
        ]

    cli = Cli(tmp_path, db_url)
    by_name = await cli.import_(capsys, history(False))
    assert "by name   3 people known by name only" in by_name
    named = numbers(await cli.report(capsys))
    assert named == {
        "joins": 3,
        "leaves": 2,
        "headcount_end": 3,  # Ann, Zoe (back), Yan
        "retention": {"1h": (2, 3), "day0": (2, 3), "day1": (0, 0)},
        "audience": 4,
        "response": 0,
        "interaction": 0,
    }
    await cli.import_(capsys, history(True), "--chat-id", "-1007777")  # a group of its own
    assert numbers(await cli.report(capsys, -1007777)) == named


# ---- the linked channel ---------------------------------------------------------------


def channel_day(forwards: bool) -> list[dict[str, Any]]:
    """Camp News posts (automatic forwards, or sent as the channel); Deals posts too.

    Ann replies to News (a host post when News is linked); News at +250 s closes Ben's
    question window before Ann's message at +300 s; Ben replies to Deals (nothing);
    Deals at +520 s does not close Cat's question, which Ann answers at +560 s."""
    if forwards:
        news1, news2 = ef.auto_forward(2, 100, NEWS), ef.auto_forward(5, 250, NEWS)
    else:
        news1 = ef.chat_post(2, 100, "channel555", NEWS[0])
        news2 = ef.chat_post(5, 250, "channel555", NEWS[0])
    return [
        ef.create_group(1, 0, HOST, ["Host", "Ann", "Ben", "Cat"]),
        news1,
        ef.message(3, 150, ANN, "great news", reply_to=2),
        ef.message(4, 200, BEN, "how do I submit?"),
        news2,
        ef.message(6, 300, ANN, "see the pinned post"),  # after News: answers nothing
        ef.chat_post(7, 400, "channel999", ADS[0], "50% off"),
        ef.message(8, 450, BEN, "spam", reply_to=7),
        ef.message(9, 500, CAT, "where is the schedule?"),
        ef.chat_post(10, 520, "channel999", ADS[0], "buy now"),
        ef.message(11, 560, ANN, "in the group description"),  # answers Cat
    ]


LINKED = {  # Ann replied to News; Ann and Cat in discussion; Ben nothing
    "joins": 0,
    "leaves": 0,
    "headcount_end": 3,
    "retention": {"1h": (0, 0), "day0": (0, 0), "day1": (0, 0)},
    "audience": 3,
    "response": 1,
    "interaction": 2,
}
NOT_LINKED = LINKED | {"response": 0, "interaction": 3}  # Ann's +300 s answers Ben


LINKED_CASES = {  # how the linked channel is known -> (flags, forwards?, summary line)
    "forwards": ((), True, "-100555 (its automatic forwards in the export)"),
    "flag": (("--linked-channel", "-100555"), False, "-100555 (from --linked-channel)"),
    "flag-export-id": (("--linked-channel", "555"), False, "-100555 (from --linked-channel)"),
    "flag-peer-id": (("--linked-channel", "channel555"), False, "-100555 (from --linked-channel)"),
    "database": ((), False, "-100555 (already known for the group)"),
    "none": ((), False, "none (no linked channel known or seen)"),
}


@pytest.mark.parametrize("how", LINKED_CASES)
async def test_the_linked_channel_by_flag_database_or_forwards(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    """Without forwards, Camp News posts as the channel: only the flag or the database
    make it the linked one; with neither its posts are nobody's, like Deals's."""
    flags, forwards, line = LINKED_CASES[how]
    repo = await Repo.open(db_url)
    try:
        if how == "database":
            await repo.ensure_chat(CHAT, "Camp", "supergroup")
            await repo.update_chat(CHAT, linked_chat_id=-100555)  # read live with getChat
        cli = Cli(tmp_path, db_url)
        summary = await cli.import_(capsys, channel_day(forwards), *flags)
        assert f"linked    {line}" in summary
        assert numbers(await cli.report(capsys)) == (NOT_LINKED if how == "none" else LINKED)
        info = await repo.chat(CHAT)
    finally:
        await repo.close()
    assert info is not None
    assert info.linked_chat_id == (None if how == "none" else -100555)  # kept for the group


async def test_the_flag_wins_over_forwards_and_bad_ids_change_nothing(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = Cli(tmp_path, db_url)
    path = ef.write(tmp_path, ef.chat(channel_day(forwards=True)))
    for bad in ("-555", "news", "0"):
        with pytest.raises(SystemExit) as exit_:  # argparse: the usage line, then why
            await cli.run("import", str(path), "--linked-channel", bad)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.splitlines()[-1].startswith("opsbot import: error: argument --linked-channel")
        assert "Traceback" not in err
    assert await cli.run("report", "--chat", str(CHAT), "--json") == 1  # nothing imported
    capsys.readouterr()
    # Deals named as the linked one: News's forwards are then another channel's posts
    summary = await cli.import_(capsys, channel_day(forwards=True), "--linked-channel", "999")
    assert "linked    -100999 (from --linked-channel)" in summary
    # Ben's reply to Deals is a response; Deals at +520 closes Cat's question window,
    # News at +250 does not close Ben's: Ann's +300 s message answers Ben
    assert numbers(await cli.report(capsys)) == LINKED


def test_what_counts_as_an_automatic_forward() -> None:
    news = ef.auto_forward(1, 0, NEWS)
    assert automatic_forward(news, 4242) == 555
    assert automatic_forward(ef.chat_post(2, 0, "channel555", NEWS[0]), 4242) is None  # as it
    shared = ef.message(3, 0, ANN, "look") | {"forwarded_from": NEWS[0]}  # a member's forward
    assert automatic_forward(shared, 4242) is None
    other = ef.chat_post(4, 0, "channel999", ADS[0]) | {"forwarded_from": NEWS[0]}
    assert automatic_forward(other, 4242) is None  # a channel forwarding another's post
    own = ef.chat_post(5, 0, "channel4242", "Camp") | {"forwarded_from": "Camp"}
    assert automatic_forward(own, 4242) is None  # the group itself (anonymous admins)


def test_linked_channel_ids_and_name_only_ids() -> None:
    assert {linked_channel_id(t) for t in ("-100555", "555", "channel555", " 555 ")} == {-100555}
    for bad in ("-555", "0", "news", "", "user555"):
        with pytest.raises(ValueError, match="expected a channel id"):
            linked_channel_id(bad)
    zoe = name_only_id(CHAT, "Zoe Lee")
    assert zoe == name_only_id(CHAT, "Zoe Lee")  # stable: the same person on every import
    assert len({zoe, name_only_id(CHAT, "Yan"), name_only_id(-1009, "Zoe Lee")}) == 3
    assert NAME_ONLY_BASE <= zoe < 2**63  # a BIGINT, and no Telegram user id (< 2**52)
