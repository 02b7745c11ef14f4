"""End to end: a scripted group day through the real Application and the fake Bot API
server; the rows stored are exactly what SPEC 2 and 4 say (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select, text

from bot import service
from bot.classify import GROUP_ANONYMOUS_BOT, TELEGRAM_SERVICE
from storage.models import ActivityRow, Chat, HostEventRow, MembershipEventRow, MessageRow
from storage.repo import Repo
from tests import tg
from tests.botapi_server import BOT_ID, FakeBotAPI
from tests.e2e import bot_running, make_config, settle

OLD, NEW, LINKED = -5000, -1005000, -1009000
GROUP = tg.group(OLD, "AI Camp", "group")
T = int(datetime(2026, 11, 20, 1, 0, tzinfo=UTC).timestamp())  # 09:00 in Shanghai
HOST, ADMIN, BOT_USER = tg.user(1, "Host"), tg.user(2, "Admin"), tg.user(BOT_ID, "opsbot", True)
OTHER_BOT = tg.user(900, "quizbot", True)
ALICE, BOB, CAROL, DAVE, ERIN = (
    tg.user(u, n)
    for u, n in [(10, "Alice"), (11, "Bob"), (12, "Carol"), (13, "Dave"), (14, "Erin")]
)
TEXTS = [
    "Day 1 task: reply with your goal",
    "I want to ship my first bot",
    "me too, Alice!",
    "作业怎么交",
    "在群公告里有链接",
    "在群公告里有链接 (edited)",
    "Welcome everyone",
    "Thanks admin",
    "New lesson is out",
    "Great lesson",
    "quiz time",
    "nice bot",
]


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    server = FakeBotAPI().start()
    server.admins[OLD] = [
        tg.member(HOST, "creator"),
        tg.member(ADMIN, "administrator"),
        tg.member(BOT_USER, "administrator"),
    ]
    server.member_counts[OLD] = 50
    server.chats[OLD] = GROUP | {"linked_chat_id": LINKED}
    yield server
    server.stop()


def scripted_day(api: FakeBotAPI) -> None:
    link = tg.invite_link("https://t.me/+camp", HOST, "camp-link")
    left, mem = tg.member(BOT_USER, "left"), tg.member(BOT_USER, "administrator")
    channel = tg.channel(LINKED)
    host_post = tg.message(GROUP, 101, T + 120, HOST, TEXTS[0])["message"]
    alice_reply = tg.message(GROUP, 102, T + 180, ALICE, TEXTS[1], reply_to=host_post)
    question = tg.message(GROUP, 104, T + 300, CAROL, TEXTS[3])["message"]
    anon = tg.message(
        GROUP,
        106,
        T + 420,
        tg.user(GROUP_ANONYMOUS_BOT, "Group", True),
        TEXTS[6],
        sender_chat=GROUP,
    )["message"]
    forward = tg.message(
        GROUP,
        108,
        T + 500,
        tg.user(TELEGRAM_SERVICE, "Telegram"),
        TEXTS[8],
        sender_chat=channel,
        is_automatic_forward=True,
    )["message"]
    bot_post = tg.message(GROUP, 111, T + 650, OTHER_BOT, TEXTS[10])["message"]
    api.push(
        tg.chat_member(GROUP, HOST, T - 3600, left, mem, mine=True),  # the bot is added
        # Alice joins by link: chat_member and the service message (one join)
        tg.chat_member(
            GROUP, ALICE, T, tg.member(ALICE, "left"), tg.member(ALICE, "member"), link
        ),
        tg.message(GROUP, 100, T + 5, ALICE, new_chat_members=[ALICE]),
        tg.chat_member(GROUP, BOB, T + 60, tg.member(BOB, "left"), tg.member(BOB, "member"), link),
        {"message": host_post},
        alice_reply,
        tg.message(GROUP, 103, T + 240, BOB, TEXTS[2], reply_to=alice_reply["message"]),
        {"message": question},
        tg.message(GROUP, 105, T + 360, BOB, TEXTS[4]),  # answers Carol without replying
        tg.message(GROUP, 105, T + 360, BOB, TEXTS[5], edited=True),  # an edit: no change
        {"message": anon},
        tg.message(GROUP, 107, T + 480, DAVE, TEXTS[7], reply_to=anon),
        {"message": forward},
        tg.message(GROUP, 109, T + 560, ERIN, TEXTS[9], reply_to=forward),  # a comment
        # Bob leaves (two sources, one leave) and comes back
        tg.chat_member(GROUP, BOB, T + 600, tg.member(BOB, "member"), tg.member(BOB, "left")),
        tg.message(GROUP, 110, T + 601, BOB, left_chat_member=BOB),
        {"message": bot_post},
        tg.message(GROUP, 112, T + 660, ALICE, TEXTS[11], reply_to=bot_post),
        tg.chat_member(GROUP, BOB, T + 900, tg.member(BOB, "left"), tg.member(BOB, "member")),
        alice_reply,  # the same update delivered again (a new update_id): stored once
        # the group becomes a supergroup
        tg.message(GROUP, 113, T + 1000, HOST, migrate_to_chat_id=NEW),
        tg.message(tg.group(NEW, "AI Camp"), 1, T + 1000, HOST, migrate_from_chat_id=OLD),
    )


async def test_scripted_day_is_stored_exactly(api: FakeBotAPI, db_url: str) -> None:
    config = make_config(api, db_url)
    async with bot_running(config):
        scripted_day(api)
        await settle(api)
    repo = await Repo.open(db_url)
    try:
        async with repo.engine.connect() as conn:
            joins = (
                await conn.execute(
                    select(
                        MembershipEventRow.user_id,
                        MembershipEventRow.kind,
                        MembershipEventRow.ts - T,
                        MembershipEventRow.invite_link,
                    )
                    .where(MembershipEventRow.chat_id == NEW)
                    .order_by(MembershipEventRow.ts)
                )
            ).all()
            messages = (
                await conn.execute(
                    select(MessageRow.message_id, MessageRow.role, MessageRow.sender_id)
                    .where(MessageRow.chat_id == NEW)
                    .order_by(MessageRow.ts)
                )
            ).all()
            activity = (
                await conn.execute(
                    select(ActivityRow.level, ActivityRow.user_id, ActivityRow.message_id).where(
                        ActivityRow.chat_id == NEW
                    )
                )
            ).all()
            hosts = (
                await conn.execute(
                    select(HostEventRow.user_id, HostEventRow.is_host).where(
                        HostEventRow.chat_id == NEW
                    )
                )
            ).all()
            old = (await conn.execute(select(Chat).where(Chat.chat_id == OLD))).one()
            new = (await conn.execute(select(Chat).where(Chat.chat_id == NEW))).one()
            leftovers = (
                await conn.execute(select(MessageRow.message_id).where(MessageRow.chat_id == OLD))
            ).all()
        assert [tuple(r) for r in joins] == [
            (10, "join", 0, "camp-link"),
            (11, "join", 60, "camp-link"),
            (11, "leave", 600, None),
            (11, "join", 900, None),
        ]
        # every non-service message once, pre-migration ids negated, no text anywhere
        assert [tuple(r) for r in messages] == [
            (-101, "host", 1),
            (-102, "member", 10),
            (-103, "member", 11),
            (-104, "member", 12),
            (-105, "member", 11),
            (-106, "host", None),
            (-107, "member", 13),
            (-108, "host", None),
            (-109, "member", 14),
            (-111, "bot", 900),
            (-112, "member", 10),
        ]
        assert sorted(tuple(r) for r in activity) == [
            ("interaction", 10, -102),
            ("interaction", 11, -105),
            ("interaction", 11, -103),
            ("interaction", 12, -104),
            ("response", 10, -102),
            ("response", 13, -107),
            ("response", 14, -109),
        ]
        assert sorted(tuple(r) for r in hosts) == [(1, True), (2, True)]
        assert old.migrated_to_chat_id == NEW
        assert leftovers == []
        assert new.baseline_count == 50 - 2 - 1  # minus the human admins and the bot
        assert new.tracking_start_ts == T - 3600
        assert new.linked_chat_id == LINKED
        await assert_no_text_stored(repo)

        now = datetime.fromtimestamp(T, UTC) + timedelta(days=3)
        report = await service.day_report(repo, config, NEW, date(2026, 11, 20), now)
        assert (report["joins"], report["leaves"]) == (2, 1)
        assert report["headcount_end"] == 47 + 2
        active = report["active"]
        assert isinstance(active, dict)
        assert active["audience"] == 47 + 2
        assert (active["response"]["users"], active["interaction"]["users"]) == (3, 3)
    finally:
        await repo.close()
    updates = api.calls_of("getUpdates")
    assert "chat_member" in updates[0].params["allowed_updates"]
    assert api.calls_of("setMyCommands")


async def assert_no_text_stored(repo: Repo) -> None:
    """Scan every column of every table for the texts the scripted day sent (SPEC 11)."""
    async with repo.engine.connect() as conn:
        for table in (
            "chats",
            "users",
            "membership_events",
            "host_events",
            "messages",
            "activity",
            "member_counts",
        ):
            for row in (await conn.execute(text(f"SELECT * FROM {table}"))).all():
                dump = " ".join(str(v) for v in row)
                for sent in TEXTS:
                    assert sent not in dump, (table, sent)


async def test_start_tells_the_owner_what_to_fix(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = FakeBotAPI().start()
    server.privacy_mode_off = False  # privacy mode on
    server.admins[-100321] = [tg.member(HOST, "creator")]  # and the bot is no admin
    group = tg.group(-100321, "Quiet")
    try:
        with caplog.at_level("WARNING"):
            async with bot_running(make_config(server, db_url)):
                server.push(
                    tg.chat_member(
                        group,
                        HOST,
                        T,
                        tg.member(BOT_USER, "left"),
                        tg.member(BOT_USER, "member"),
                        mine=True,
                    ),
                    tg.message(
                        group,
                        5,
                        T + 5,
                        HOST,
                        "/start",
                        entities=[{"type": "bot_command", "offset": 0, "length": 6}],
                    ),
                )
                await settle(server)
        [reply] = [
            c.params["text"]
            for c in server.calls_of("sendMessage")
            if int(c.params["chat_id"]) == -100321
        ]
        assert "隐私模式已开启" in reply
        assert "Group Privacy" in reply
        assert "我还不是本群管理员" in reply
        assert "privacy mode is on" in caplog.text
    finally:
        server.stop()


async def test_admin_changes_while_the_bot_was_down_are_read_at_start(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """At start every group's admin list is read again (in parallel): hosts promoted or
    demoted meanwhile are stored, and a group where the bot lost admin rights is named."""
    server = FakeBotAPI().start()
    groups = [-100401, -100402, -100403]
    new_host = tg.user(30, "New host")
    for chat in groups:
        server.admins[chat] = [tg.member(HOST, "creator"), tg.member(BOT_USER, "administrator")]
    try:
        async with bot_running(make_config(server, db_url)):
            server.push(
                *(
                    tg.chat_member(
                        tg.group(chat, f"G{chat}"),
                        HOST,
                        T,
                        tg.member(BOT_USER, "left"),
                        tg.member(BOT_USER, "administrator"),
                        mine=True,
                    )
                    for chat in groups
                )
            )
            await settle(server)
        # while the bot is down: a new admin in the first group, the creator hands over
        # the second, the bot is demoted in the third
        server.admins[groups[0]].append(tg.member(new_host, "administrator"))
        server.admins[groups[1]] = [
            tg.member(new_host, "creator"),
            tg.member(BOT_USER, "administrator"),
        ]
        server.admins[groups[2]] = [tg.member(HOST, "creator")]
        caplog.clear()
        with caplog.at_level("WARNING"):
            async with bot_running(make_config(server, db_url)) as app:
                repo: Repo = app.bot_data["repo"]
                hosts = [await repo.admin_hosts(chat) for chat in groups]
    finally:
        server.stop()
    assert hosts == [{HOST["id"], 30}, {30}, {HOST["id"]}]
    not_admin = [r.getMessage() for r in caplog.records if "not an admin" in r.getMessage()]
    assert not_admin == [
        f"chat {groups[2]}: the bot is not an admin; joins and leaves are not sent"
    ]
