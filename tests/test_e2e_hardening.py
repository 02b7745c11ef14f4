"""Bad input, privacy and secrets (issue 8), through the real Application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bot.app import StartupError, build_application, running
from bot.cli import main
from bot.config import Config
from bot.context import OpsApplication
from storage.models import ActivityRow, MembershipEventRow, MessageRow
from storage.repo import Repo
from tests import tg
from tests.botapi_server import BOT_ID, TOKEN, FakeBotAPI
from tests.e2e import bot_running, make_config, settle

CHAT = -100555
GROUP = tg.group(CHAT, "Camp")
HOST, ADMIN, BOT_USER = tg.user(1, "Host"), tg.user(2, "Admin"), tg.user(BOT_ID, "opsbot", True)
ALICE, BOB = tg.user(10, "Alice"), tg.user(11, "Bob")
T = int(datetime(2026, 11, 20, 2, 0, tzinfo=UTC).timestamp())


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    server = FakeBotAPI().start()
    server.admins[CHAT] = [
        tg.member(HOST, "creator"),
        tg.member(ADMIN, "administrator"),
        tg.member(BOT_USER, "administrator"),
    ]
    server.member_counts[CHAT] = 10
    yield server
    server.stop()


@pytest.fixture
async def bot(api: FakeBotAPI, db_url: str) -> AsyncIterator[OpsApplication]:
    async with bot_running(make_config(api, db_url)) as app:
        api.push(
            tg.chat_member(
                GROUP,
                HOST,
                T - 60,
                tg.member(BOT_USER, "left"),
                tg.member(BOT_USER, "administrator"),
                mine=True,
            )
        )
        yield app


def cmd(
    text: str, sender: dict[str, Any], chat: dict[str, Any] = GROUP, mid: int = 900
) -> dict[str, Any]:
    return tg.message(
        chat,
        mid,
        T + 5000,
        sender,
        text,
        entities=[{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}],
    )


async def rows(app: OpsApplication, query: Any) -> list[tuple[Any, ...]]:
    repo: Repo = app.bot_data["repo"]
    async with repo.engine.connect() as conn:
        return [tuple(r) for r in (await conn.execute(query)).all()]


async def test_odd_updates_are_handled_by_rule_and_never_crash(
    api: FakeBotAPI, bot: OpsApplication, caplog: pytest.LogCaptureFixture
) -> None:
    other_channel = tg.channel(-100777, "Spam channel")
    question = tg.message(GROUP, 12, T + 30, BOB, "\u202e作业怎么交\u200b?\u200b")[
        "message"
    ]  # RTL and zero-width
    with caplog.at_level(logging.ERROR):
        api.push(
            tg.message(GROUP, 10, T + 10, None, "no sender at all"),
            tg.message(
                GROUP,
                11,
                T + 20,
                tg.user(136817688, "Channel", True),
                "ad",
                sender_chat=other_channel,
            ),  # a channel that is not the linked one
            {"message": question},
            tg.message(GROUP, 13, T + 40, ALICE, "🙂" * 5000),  # emoji only, giant
            tg.message(
                GROUP,
                14,
                T + 50,
                ALICE,
                "replying to something long gone",
                reply_to=tg.message(GROUP, 3, T - 99999, BOB, "old")["message"],
            ),
            {
                "message_reaction": {
                    "chat": GROUP,
                    "message_id": 13,
                    "date": T + 60,
                    "old_reaction": [],
                    "new_reaction": [],
                }
            },
            # out of order: a leave dated before the join that arrived first
            tg.chat_member(
                GROUP, ALICE, T + 500, tg.member(ALICE, "left"), tg.member(ALICE, "member")
            ),
            tg.chat_member(
                GROUP, ALICE, T + 400, tg.member(ALICE, "member"), tg.member(ALICE, "left")
            ),
        )
        await settle(api)
    assert not [r for r in caplog.records if "failed" in r.getMessage()]
    roles = await rows(
        bot,
        select(MessageRow.message_id, MessageRow.role, MessageRow.is_question)
        .where(MessageRow.chat_id == CHAT)
        .order_by(MessageRow.message_id),
    )
    assert roles == [
        (10, "other", False),
        (11, "other", False),
        (12, "member", True),
        (13, "member", False),
        (14, "member", False),
    ]
    # Alice's emoji post answers Bob's question; the reply to an unknown message does not
    active = await rows(
        bot,
        select(ActivityRow.user_id, ActivityRow.message_id)
        .where(ActivityRow.chat_id == CHAT)
        .order_by(ActivityRow.message_id),
    )
    # (a reply to a message the bot never stored still names its sender in the update:
    # Bob's message 3 and Alice's reply 14 are a member-to-member discussion)
    assert active == [(11, 3), (11, 12), (10, 13), (10, 14)]
    # each event is filed at its own time, whatever the arrival order
    events = await rows(
        bot,
        select(MembershipEventRow.kind, MembershipEventRow.ts - T)
        .where(MembershipEventRow.chat_id == CHAT)
        .order_by(MembershipEventRow.ts),
    )
    assert events == [("leave", 400), ("join", 500)]


async def test_forgetme_removes_a_person_everywhere(api: FakeBotAPI, bot: OpsApplication) -> None:
    api.push(
        tg.chat_member(GROUP, ALICE, T, tg.member(ALICE, "left"), tg.member(ALICE, "member")),
        tg.message(GROUP, 20, T + 10, ALICE, "hi?"),
        tg.message(GROUP, 21, T + 20, BOB, "hello"),
    )
    await settle(api)
    private = {"id": 10, "type": "private", "first_name": "Alice"}
    refused = cmd("/forgetme", ALICE)
    api.push(refused, cmd("/forgetme", ALICE, chat=private, mid=901))
    await settle(api)
    texts = [c.params["text"] for c in api.calls_of("sendMessage")]
    assert any("/forgetme" in x for x in texts)  # in the group: go private
    assert any("records about you were removed" in x or "条记录" in x for x in texts)
    assert await rows(bot, select(MessageRow.message_id).where(MessageRow.sender_id == 10)) == []
    assert await rows(bot, select(ActivityRow.message_id).where(ActivityRow.user_id == 10)) == []
    assert (
        await rows(bot, select(MembershipEventRow.id).where(MembershipEventRow.user_id == 10))
        == []
    )
    assert await rows(bot, select(MessageRow.message_id).where(MessageRow.sender_id == 11)) == [
        (21,)
    ]


async def test_purge_is_for_the_creator_after_confirmation(
    api: FakeBotAPI, bot: OpsApplication
) -> None:
    api.push(tg.message(GROUP, 30, T + 10, ALICE, "hi"))
    api.push(cmd("/purge", ADMIN, mid=910), cmd("/purge confirm", ADMIN, mid=911))
    await settle(api)
    assert await rows(bot, select(MessageRow.message_id).where(MessageRow.chat_id == CHAT))
    api.push(cmd("/purge confirm", HOST, mid=912))  # not asked first: just asks
    await settle(api)
    assert await rows(bot, select(MessageRow.message_id).where(MessageRow.chat_id == CHAT))
    api.push(cmd("/purge", HOST, mid=913), cmd("/purge confirm", HOST, mid=914))
    await settle(api)
    assert await rows(bot, select(MessageRow.message_id).where(MessageRow.chat_id == CHAT)) == []
    texts = [c.params["text"] for c in api.calls_of("sendMessage")]
    assert "只有群主可以清除本群数据。" in texts
    assert "本群的全部数据已删除。" in texts


async def test_token_never_appears_in_logs_of_a_failing_start(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    api = FakeBotAPI(token="999:OTHER").start()  # rejects our token: 401 Unauthorized
    try:
        config = Config(token=TOKEN, api_base_url=api.base_url, storage_url=db_url)
        with caplog.at_level(logging.DEBUG), pytest.raises(StartupError) as info:
            async with running(build_application(config), poll_timeout=1):
                pass
        assert TOKEN not in str(info.value)
        assert TOKEN.split(":")[1] not in caplog.text
    finally:
        api.stop()


def test_world_readable_token_file_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[telegram]\ntoken = "{TOKEN}"\n[storage]\nurl = "sqlite:///{tmp_path}/x.db"\n'
    )
    cfg.chmod(0o644)
    assert main(["db", "upgrade", "--config", str(cfg)]) == 0  # status alone creates nothing
    err = capsys.readouterr().err
    assert "chmod 600" in err
    assert TOKEN not in err
    cfg.chmod(0o600)
    assert main(["db", "status", "--config", str(cfg)]) == 0
    assert "chmod" not in capsys.readouterr().err


async def test_lost_admin_rights_lose_write_access_within_five_minutes(
    api: FakeBotAPI, bot: OpsApplication
) -> None:
    api.push(cmd("/settarget next_day 80%", ADMIN, mid=920))
    await settle(api)
    api.admins[CHAT] = [a for a in api.admins[CHAT] if a["user"]["id"] != ADMIN["id"]]
    checks: dict[tuple[int, int], tuple[float, bool]] = bot.bot_data["admin_checks"]
    when, _ = checks[(CHAT, ADMIN["id"])]
    checks[(CHAT, ADMIN["id"])] = (when - 301, True)  # five minutes and a second later
    api.push(cmd("/settarget next_day 90%", ADMIN, mid=921))
    await settle(api)
    texts = [
        c.params["text"] for c in api.calls_of("sendMessage") if int(c.params["chat_id"]) == CHAT
    ]
    assert texts[-2] == "目标已设定：次日留存 ≥ 80%"
    assert texts[-1] == "只有本群管理员可以使用这个命令。"


async def test_updates_from_a_group_the_bot_left_are_filed_without_restarting_tracking(
    api: FakeBotAPI, bot: OpsApplication
) -> None:
    api.push(
        tg.chat_member(
            GROUP,
            HOST,
            T + 100,
            tg.member(BOT_USER, "administrator"),
            tg.member(BOT_USER, "kicked"),
            mine=True,
        ),
        # sent before the removal, delivered after it: a real event, filed at its time
        tg.message(GROUP, 40, T + 90, ALICE, "late"),
    )
    await settle(api)
    repo: Repo = bot.bot_data["repo"]
    info = await repo.chat(CHAT)
    assert info is not None
    assert info.bot_status == "left"
    assert info.tracking_start_utc == datetime.fromtimestamp(T - 60, UTC)
    assert await rows(bot, select(MessageRow.message_id).where(MessageRow.chat_id == CHAT)) == [
        (40,)
    ]
    assert CHAT not in await repo.chat_ids()  # no digests or alerts for it any more
    assert bot.job_queue is not None
    assert not [j for j in bot.job_queue.jobs() if j.name and str(CHAT) in j.name]


SENDERS = st.sampled_from([ALICE, BOB, HOST, tg.user(900, "quiz", True), None])
TEXTS = st.one_of(
    st.none(),
    st.text(max_size=300),
    st.just("🙂" * 2000),
    st.text(alphabet="\u200b\u202e?？吗 how", max_size=20),
)


@st.composite
def odd_updates(draw: st.DrawFn) -> list[dict[str, Any]]:
    updates: list[dict[str, Any]] = []
    for mid in range(draw(st.integers(20, 40))):
        ts = T + 100 + mid * draw(st.integers(0, 120))
        sender = draw(SENDERS)
        kind = draw(st.sampled_from(["post", "reply", "channel", "join", "leave", "edit"]))
        if kind in ("join", "leave") and sender is not None:
            old, new = ("left", "member") if kind == "join" else ("member", "left")
            updates.append(
                tg.chat_member(GROUP, sender, ts, tg.member(sender, old), tg.member(sender, new))
            )
            continue
        extra: dict[str, Any] = {}
        if kind == "reply" and updates:
            target = draw(st.sampled_from(updates))
            extra["reply_to"] = target.get("message") or target.get("edited_message")
        if kind == "channel":
            extra["sender_chat"] = draw(st.sampled_from([GROUP, tg.channel(-100777)]))
        updates.append(
            tg.message(GROUP, 1000 + mid, ts, sender, draw(TEXTS), edited=kind == "edit", **extra)
        )
    return updates


@settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=odd_updates())
async def test_fuzzed_updates_never_make_a_handler_fail(
    api: FakeBotAPI,
    bot: OpsApplication,
    caplog: pytest.LogCaptureFixture,
    batch: list[dict[str, Any]],
) -> None:
    with caplog.at_level(logging.ERROR):
        api.push(*batch)
        await settle(api)
    assert not [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]


async def test_refused_getupdates_is_waited_out_and_polling_resumes(
    api: FakeBotAPI, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """409 Conflict (another process polling with the token) neither stops ingest nor
    floods the log: one line when it starts, one when polling works again."""
    api.fail_next(
        "getUpdates",
        count=3,
        error_code=409,
        description="Conflict: terminated by other getUpdates request",
    )
    with caplog.at_level(logging.WARNING, logger="bot.ingest"):
        async with bot_running(make_config(api, db_url)) as app:
            api.push(tg.message(GROUP, 20, T, ALICE, "hello"))
            await settle(api)
            stored = await rows(app, select(MessageRow.message_id))
    assert stored == [(20,)]
    lines = [r.getMessage() for r in caplog.records]
    assert sum("refused getUpdates (Conflict)" in line for line in lines) == 1
    assert sum("polling resumed" in line for line in lines) == 1
