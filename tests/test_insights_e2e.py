"""`opsbot insights` end to end: one hand-made camp day, imported from its Telegram Desktop
export and fed live through the real Application and the fake Bot API server, printed by
the real CLI and compared with numbers worked out by hand. Also: the migration's back-fill,
the richer of two sources of one join, and the CLI's bad arguments."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from bot.cli import main
from bot.events import MemberKind, MembershipEvent
from storage import db
from storage.repo import Repo
from tests import export_factory as ef
from tests import tg
from tests.botapi_server import BOT_ID, FakeBotAPI
from tests.e2e import bot_running, make_config, settle

CHAT_ID = -1004242  # the export's private_supergroup 4242
T0 = ef.T0  # 2026-11-18 19:06:40 in Shanghai, a Wednesday
HOST, ANN, BEN, CAT, DAN = ef.HOST, ef.ANN, ef.BEN, ef.CAT, ef.DAN
EVE, FRED, GIA = ("Eve", 14), ("Fred", 15), ("Gia", 16)
NEXT_DAY_10 = 53_600  # 2026-11-19 10:00 in Shanghai, a Thursday


def camp() -> list[dict[str, Any]]:
    """Ann was there before; Ben comes by link, Dan by request; Ann adds Cat (a referral),
    the host adds Eve (not one), Fred joins on his own, Cat adds Gia (a referral). Ben
    replies to the host and leaves on day 1; Cat replies to the host, Dan to Cat, and Dan
    to the host the next morning; Eve, Fred and Gia only say hello."""
    return [
        ef.create_group(1, 0, HOST, ["Host", "Ann"]),
        ef.join_by_link(2, 60, BEN),
        ef.invite(3, 120, ANN, ["Cat"]),
        ef.join_by_request(4, 130, DAN),
        ef.invite(5, 140, HOST, ["Eve"]),
        ef.invite(6, 150, FRED, ["Fred"]),
        ef.message(7, 200, HOST, "Day 1: reply with your goal"),
        ef.message(8, 260, BEN, "ship it", reply_to=7),
        ef.message(9, 300, CAT, "learn it", reply_to=7),
        ef.message(10, 400, DAN, "me too", reply_to=9),
        ef.message(11, 450, FRED, "hello"),
        ef.invite(12, 500, CAT, ["Gia"]),
        ef.message(13, 600, EVE, "hello"),
        ef.message(14, 650, GIA, "hello"),
        ef.remove(15, 20_000, BEN, ["Ben"]),  # day 1, 00:40
        ef.message(16, NEXT_DAY_10, HOST, "Day 2"),
        ef.message(17, NEXT_DAY_10 + 50, HOST, "Day 2, part 2"),
        ef.message(18, NEXT_DAY_10 + 100, DAN, "done", reply_to=16),
    ]


def expected(link_source: str) -> dict[str, Any]:
    """Worked out by hand. Cohort of 11-18: Ben, Cat, Dan, Eve, Fred, Gia (all windows
    over by now). Referrals: Cat (by Ann, a member), Gia (by Cat); Eve's adder is a host."""

    def ret(day1: int) -> dict[str, Any]:
        return {
            "1h": {"retained": 1, "matured": 1, "pending": 0, "rate": 1.0},
            "day0": {"retained": 1, "matured": 1, "pending": 0, "rate": 1.0},
            "day1": {"retained": day1, "matured": 1, "pending": 0, "rate": float(day1)},
        }

    def one(source: str, day1: int, activated: int) -> dict[str, Any]:
        return {
            "source": source,
            "joins": 1,
            "retention": ret(day1),
            "activated": {
                "users": activated,
                "matured": 1,
                "pending": 0,
                "rate": float(activated),
            },
        }

    three = {"retained": 3, "matured": 3, "pending": 0, "rate": 1.0}
    messages = [[0] * 24 for _ in range(7)]
    messages[2][19] = 6  # Ben, Cat, Dan, Fred, Eve, Gia on Wednesday 19:xx
    messages[3][10] = 1  # Dan on Thursday 10:01
    means: list[list[float | None]] = [[None] * 24 for _ in range(7)]
    means[2][19] = 2.0  # Ben and Cat replied to the host's post
    means[3][10] = 0.5  # Dan replied to one of two posts
    sources = [
        {
            "source": "added",  # Cat (activated), Eve, Gia
            "joins": 3,
            "retention": {"1h": three, "day0": three, "day1": three},
            "activated": {"users": 1, "matured": 3, "pending": 0, "rate": 0.3333},
        },
        one("direct", 1, 0),  # Fred
        one(link_source, 0, 1),  # Ben: replied, then left on day 1
        one("request", 1, 1),  # Dan: replied to the host on day 1
    ]
    sources[1:] = sorted(sources[1:], key=lambda s: s["source"])
    steps = [("joined", 6), ("stayed_1h", 6), ("stayed_day1", 5)]
    steps += [("responded", 2), ("interacted", 2), ("referred", 1)]
    return {
        "chat_id": CHAT_ID,
        "from": "2026-11-18",
        "to": "2026-11-19",
        "timezone": "Asia/Shanghai",
        "activation_days": 7,
        "sources": sources,
        # audience: Ann (the baseline) and the six newcomers
        "referral": {"referred_joins": 2, "referrers": 2, "audience": 7, "rate": 0.2857},
        "funnel": {
            "pending": 0,
            "steps": [{"step": s, "users": n, "share": round(n / 6, 4)} for s, n in steps],
        },
        "hours": {"messages": messages, "responders_per_host_post": means},
        "quiet": [
            {"user_id": 14, "name": "Eve", "username": None, "joined": "2026-11-18T11:09:00Z"},
            {"user_id": 15, "name": "Fred", "username": None, "joined": "2026-11-18T11:09:10Z"},
            {"user_id": 16, "name": "Gia", "username": None, "joined": "2026-11-18T11:15:00Z"},
        ],
    }


def config_file(tmp_path: Path, db_url: str, language: str = "zh") -> str:
    path = tmp_path / "opsbot.toml"
    path.write_text(f'[storage]\nurl = "{db_url}"\n[defaults]\nlanguage = "{language}"\n')
    return str(path)


async def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(args))
    out, err = capsys.readouterr()
    return code, out, err


INSIGHTS = ("insights", "--chat", str(CHAT_ID), "--from", "2026-11-18", "--to", "2026-11-19")


async def test_insights_of_an_imported_export(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config_file(tmp_path, db_url)
    export = ef.write(tmp_path, ef.chat(camp()))
    code, _, err = await cli(capsys, "import", str(export), "--host", "1", "--config", cfg)
    assert code == 0, err
    code, out, _ = await cli(capsys, *INSIGHTS, "--json", "--config", cfg)
    assert code == 0
    assert json.loads(out) == expected("link")
    assert list(json.loads(out)) == list(expected("link"))  # key order as documented


def live_updates() -> list[dict[str, Any]]:
    """The same day as the Bot API delivers it, with richer detail than the export has."""
    group = tg.group(CHAT_ID)
    u = {p[1]: tg.user(p[1], p[0]) for p in (HOST, ANN, BEN, CAT, DAN, EVE, FRED, GIA)}
    bot = tg.user(BOT_ID, "opsbot", True)

    def joined(who: int, actor: int, dt: int, **extra: Any) -> dict[str, Any]:
        upd = tg.chat_member(
            group, u[actor], T0 + dt, tg.member(u[who], "left"), tg.member(u[who], "member")
        )
        upd["chat_member"].update(extra)
        return upd

    def service(mid: int, dt: int, actor: int, who: int) -> dict[str, Any]:
        return tg.message(group, mid, T0 + dt, u[actor], new_chat_members=[u[who]])

    link = tg.invite_link("https://t.me/+cAmPpOsTeR", u[1], name="camp-poster")
    by_id: dict[int, dict[str, Any]] = {}

    def say(mid: int, dt: int, who: int, words: str, reply_to: int | None = None) -> Any:
        upd = tg.message(group, mid, T0 + dt, u[who], words, reply_to=by_id.get(reply_to or -1))
        by_id[mid] = upd["message"]
        return upd

    return [
        tg.chat_member(
            group, u[1], T0, tg.member(bot, "left"), tg.member(bot, "administrator"), mine=True
        ),
        joined(11, 11, 60, invite_link=link),
        service(3, 120, 10, 12),  # the service message first: the chat_member one is richer
        joined(12, 10, 121),
        joined(13, 1, 130, via_join_request=True),  # approved by the host
        service(5, 140, 1, 14),  # Eve: seen only as a service message
        joined(15, 15, 150),
        service(6, 150, 15, 15),
        say(7, 200, 1, "Day 1: reply with your goal"),
        say(8, 260, 11, "ship it", 7),
        say(9, 300, 12, "learn it", 7),
        say(10, 400, 13, "me too", 9),
        say(11, 450, 15, "hello"),
        joined(16, 12, 500),
        say(13, 600, 14, "hello"),
        say(14, 650, 16, "hello"),
        tg.chat_member(
            group, u[11], T0 + 20_000, tg.member(u[11], "member"), tg.member(u[11], "left")
        ),
        say(16, NEXT_DAY_10, 1, "Day 2"),
        say(17, NEXT_DAY_10 + 50, 1, "Day 2, part 2"),
        say(18, NEXT_DAY_10 + 100, 13, "done", 16),
    ]


async def test_insights_of_the_same_day_fed_live(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    api = FakeBotAPI().start()
    try:
        api.admins[CHAT_ID] = [
            tg.member(tg.user(1, "Host"), "creator"),
            tg.member(tg.user(BOT_ID, "opsbot", True), "administrator"),
        ]
        api.member_counts[CHAT_ID] = 3  # the host, Ann and the bot
        async with bot_running(make_config(api, db_url)):
            api.push(*live_updates())
            await settle(api, wait_s=60)
    finally:
        api.stop()
    cfg = config_file(tmp_path, db_url)
    code, out, _ = await cli(capsys, *INSIGHTS, "--json", "--config", cfg)
    assert code == 0
    assert json.loads(out) == expected("link:camp-poster")
    repo = await Repo.open(db_url)
    try:
        joins = {
            e.user_id: (e.join_source, e.inviter_id)
            for e in (await repo.history(CHAT_ID)).membership
            if e.kind == MemberKind.JOIN
        }
    finally:
        await repo.close()
    assert joins == {
        11: ("link:camp-poster", 1),  # the link's creator
        12: ("added", 10),  # the chat_member update replaced the service message's row
        13: ("request", 1),  # the approver
        14: ("added", 1),  # a service message only
        15: ("direct", None),
        16: ("added", 12),
    }


async def test_the_readable_table_in_both_languages(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    export = ef.write(tmp_path, ef.chat(camp()))
    zh = config_file(tmp_path, db_url)
    assert (await cli(capsys, "import", str(export), "--host", "1", "--config", zh))[0] == 0
    code, out, _ = await cli(capsys, *INSIGHTS, "--config", zh)
    assert code == 0
    assert "进群来源" in out
    assert "33.3% (1/3)" in out  # activated among the added
    assert "转介绍率 28.6%" in out
    en = config_file(tmp_path, db_url, "en")
    code, out, _ = await cli(capsys, *INSIGHTS, "--config", en)
    assert code == 0
    assert "stayed next day   5  83.3%" in out
    assert "Quiet newcomers: 3" in out
    assert "Eve (14)" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--days", "0"), "opsbot: --days: expected a whole number from 1 to 3660, got '0'\n"),
        (("--days", "7", "--from", "2026-11-01"), "opsbot: --days: give either"),
        (("--from", "2026-11-01"), "opsbot: --from and --to: give both"),
        (("--from", "2026-11-31", "--to", "2026-12-01"), "opsbot: --from: expected YYYY-MM-DD"),
        (("--from", "2026-11-05", "--to", "2026-11-01"), "opsbot: --from: 2026-11-05 is after"),
        (("--days", "²"), "opsbot: --days: expected a whole number"),
        (("--from", "2001-01-01", "--to", "2026-11-01"), "opsbot: --from 2001-01-01: expected"),
    ],
)
async def test_bad_arguments_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    cfg = config_file(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    code, out, err = await cli(capsys, "insights", "--chat", "-1", *args, "--config", cfg)
    assert (code, out) == (2, "")
    assert err.startswith(message)
    assert err.count("\n") == 1
    assert not (tmp_path / "x.db").exists()  # nothing was touched


async def test_an_unknown_group_or_no_database_is_told_as_report_tells_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config_file(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    report = await cli(capsys, "report", "--chat", "-5", "--json", "--config", cfg)
    insights = await cli(capsys, "insights", "--chat", "-5", "--json", "--config", cfg)
    assert insights == report
    assert insights[0] != 0
    assert "there is no database" in insights[2]
    assert not (tmp_path / "x.db").exists()
    assert (await cli(capsys, "db", "upgrade", "--config", cfg))[0] == 0
    code, out, err = await cli(capsys, "insights", "--chat", "-5", "--json", "--config", cfg)
    assert (code, out) == (1, "")
    assert err == (
        "opsbot: no group -5 in the database at [storage] url (opsbot chats lists them)\n"
    )


async def test_a_range_ending_after_today_is_refused(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config_file(tmp_path, db_url)
    export = ef.write(tmp_path, ef.chat(camp()))
    assert (await cli(capsys, "import", str(export), "--host", "1", "--config", cfg))[0] == 0
    later = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    args = ("insights", "--chat", str(CHAT_ID), "--from", "2026-11-18", "--to", later)
    code, out, err = await cli(capsys, *args, "--config", cfg)
    assert (code, out) == (2, "")
    assert err.startswith(f"opsbot: --to {later}: that day has not begun yet")


# ---- recording: the migration's back-fill, and the richer of two sources -----------------


async def test_the_migration_back_fills_sources_from_stored_links(db_url: str) -> None:
    engine = db.make_engine(db_url)
    try:
        await db.upgrade(engine, "0005")
        async with engine.begin() as conn:
            for i, (kind, link, request) in enumerate(
                [
                    ("join", "camp-poster", False),
                    ("join", "https://t.me/+AbC", False),
                    ("join", None, True),
                    ("join", None, False),
                    ("leave", None, False),
                ]
            ):
                await conn.execute(
                    text(
                        "INSERT INTO membership_events (chat_id, user_id, kind, ts, seq, source,"
                        " invite_link, via_join_request) VALUES (-1, :u, :k, 100, 0,"
                        " 'chat_member', :l, :r)"
                    ),
                    {"u": i, "k": kind, "l": link, "r": request},
                )
        await db.upgrade(engine)
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT user_id, join_source, inviter_id FROM membership_events")
            )
            got = {u: (s, i) for u, s, i in rows}
    finally:
        await engine.dispose()
    assert got == {
        0: ("link:camp-poster", None),
        1: ("link:https://t.me/+AbC", None),
        2: ("request", None),
        3: (None, None),  # read as direct: nothing says otherwise
        4: (None, None),
    }


def ev(source: str, dt: int, join_source: str, inviter: int | None) -> MembershipEvent:
    ts = datetime.fromtimestamp(T0 + dt, UTC)
    return MembershipEvent(-1, 50, MemberKind.JOIN, ts, dt, source, None, join_source, inviter)


async def test_the_same_join_from_two_sources_keeps_the_richer(repo: Repo) -> None:
    assert await repo.record_membership(ev("service", 0, "direct", None))
    assert not await repo.record_membership(ev("chat_member", 30, "link:ads", 7))
    # and the other way round: a later service message changes nothing
    assert await repo.record_membership(
        MembershipEvent(
            -1,
            51,
            MemberKind.JOIN,
            datetime.fromtimestamp(T0, UTC),
            0,
            "chat_member",
            None,
            "request",
            1,
        )
    )
    assert not await repo.record_membership(
        MembershipEvent(
            -1,
            51,
            MemberKind.JOIN,
            datetime.fromtimestamp(T0 + 5, UTC),
            5,
            "service",
            None,
            "direct",
            None,
        )
    )
    rows = {
        e.user_id: (e.source, e.join_source, e.inviter_id, e.ts_utc.timestamp() - T0)
        for e in (await repo.history(-1)).membership
    }
    assert rows == {50: ("chat_member", "link:ads", 7, 0), 51: ("chat_member", "request", 1, 0)}


async def test_two_sources_of_one_join_in_one_batch_keep_the_richer(repo: Repo) -> None:
    async with repo.batch():
        await repo.record_membership(ev("service", 0, "added", 9))
        await repo.record_membership(ev("chat_member", 2, "link:ads", 7))
    [row] = (await repo.history(-1)).membership
    assert (row.source, row.join_source, row.inviter_id) == ("chat_member", "link:ads", 7)


def kolkata_export() -> dict[str, Any]:
    """Member messages either side of Tuesday 00:00 in Kolkata (18:30 UTC on Monday), and
    a host post in each hour, one of them answered by two members, one the next day."""

    def dt(utc: str) -> int:
        return int(datetime.fromisoformat(utc + "+00:00").timestamp()) - T0

    return ef.chat(
        [
            ef.create_group(1, dt("2026-11-16T12:00:00"), HOST, ["Host", "Ann", "Ben"]),
            ef.message(2, dt("2026-11-16T18:29:59"), ANN, "late"),  # Mon 23:59:59
            ef.message(3, dt("2026-11-16T18:30:00"), ANN, "early"),  # Tue 00:00
            ef.message(4, dt("2026-11-16T18:44:00"), HOST, "good night"),  # Tue 00:14
            ef.message(5, dt("2026-11-16T18:45:00"), BEN, "night", reply_to=4),
            ef.message(6, dt("2026-11-17T18:44:00"), ANN, "next day", reply_to=4),  # 24 h
            ef.message(7, dt("2026-11-17T18:44:01"), BEN, "too late", reply_to=4),
            ef.message(8, dt("2026-11-16T18:20:00"), HOST, "evening"),  # Mon 23:50
        ]
    )


async def test_hours_of_a_half_hour_offset_zone_from_the_database(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "kolkata.toml"
    cfg.write_text(f'[storage]\nurl = "{db_url}"\n[defaults]\ntimezone = "Asia/Kolkata"\n')
    export = ef.write(tmp_path, kolkata_export())
    code, _, err = await cli(capsys, "import", str(export), "--host", "1", "--config", str(cfg))
    assert code == 0, err
    args = ("insights", "--chat", str(CHAT_ID), "--from", "2026-11-16", "--to", "2026-11-17")
    code, out, _ = await cli(capsys, *args, "--json", "--config", str(cfg))
    assert code == 0
    hours = json.loads(out)["hours"]
    cells = {(d, h): n for d, row in enumerate(hours["messages"]) for h, n in enumerate(row) if n}
    # Tue 00:00: Ann's early and Ben's reply; the late replies (Wed 00:14) are after B
    assert cells == {(0, 23): 1, (1, 0): 2}
    means = {
        (d, h): m
        for d, row in enumerate(hours["responders_per_host_post"])
        for h, m in enumerate(row)
        if m is not None
    }
    assert means == {(0, 23): 0.0, (1, 0): 2.0}  # Ben, and Ann at exactly 24 h


async def test_live_adds_by_a_bot_are_no_referrals_and_by_someone_unseen_are(
    tmp_path: Path, db_url: str
) -> None:
    from bot.insights_service import insights_report

    group = tg.group(CHAT_ID)
    helper, stranger = tg.user(900, "HelperBot", is_bot=True), tg.user(31, "Stranger")
    x, y = tg.user(30, "X"), tg.user(32, "Y")
    bot = tg.user(BOT_ID, "opsbot", True)
    api = FakeBotAPI().start()
    try:
        api.admins[CHAT_ID] = [
            tg.member(tg.user(1, "Host"), "creator"),
            tg.member(bot, "administrator"),
        ]
        api.member_counts[CHAT_ID] = 2
        config = make_config(api, db_url)
        async with bot_running(config) as app:
            api.push(
                tg.chat_member(
                    group,
                    tg.user(1, "Host"),
                    T0,
                    tg.member(bot, "left"),
                    tg.member(bot, "administrator"),
                    mine=True,
                ),
                tg.chat_member(
                    group, helper, T0 + 60, tg.member(x, "left"), tg.member(x, "member")
                ),
                tg.message(group, 5, T0 + 90, stranger, new_chat_members=[y]),
            )
            await settle(api)
            report = await insights_report(
                app.bot_data["repo"],
                config,
                CHAT_ID,
                date(2026, 11, 18),
                date(2026, 11, 18),
                datetime(2026, 11, 30, tzinfo=UTC),
            )
    finally:
        api.stop()
    assert report["referral"] == {
        "referred_joins": 1,  # Y, added by someone never seen (only members can add)
        "referrers": 1,
        "audience": 2,
        "rate": 0.5,
    }
    assert [s["source"] for s in report["sources"]] == ["added"]  # type: ignore[index]
