"""Digests and alerts (SPEC 5, 6): right local time, exactly once, retries honoured."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot import schedule
from tests import tg
from tests.botapi_server import BOT_ID, FakeBotAPI
from tests.e2e import bot_running, make_config, settle

SH, NY = ZoneInfo("Asia/Shanghai"), ZoneInfo("America/New_York")
CHAT = -100777
GROUP = tg.group(CHAT, "Camp")
HOST, BOT_USER = tg.user(1, "Host"), tg.user(BOT_ID, "opsbot", True)


def local_ts(days_ago: int, hour: int, minute: int = 0, tz: ZoneInfo = SH) -> int:
    today = datetime.now(tz).date()
    return int(
        datetime.combine(today - timedelta(days=days_ago), time(hour, minute), tz).timestamp()
    )


def joins(
    n: int, first_user: int, ts: int, leave_after_s: int | None = None
) -> list[dict[str, Any]]:
    out = []
    for u in range(first_user, first_user + n):
        user = tg.user(u)
        out.append(
            tg.chat_member(GROUP, user, ts, tg.member(user, "left"), tg.member(user, "member"))
        )
        if leave_after_s is not None:
            out.append(
                tg.chat_member(
                    GROUP,
                    user,
                    ts + leave_after_s,
                    tg.member(user, "member"),
                    tg.member(user, "left"),
                )
            )
    return out


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    server = FakeBotAPI().start()
    server.admins[CHAT] = [tg.member(HOST, "creator"), tg.member(BOT_USER, "administrator")]
    server.member_counts[CHAT] = 12
    server.chats[CHAT] = GROUP
    yield server
    server.stop()


def history(api: FakeBotAPI) -> None:
    """Added 3 days ago; 12 newcomers 2 days ago, 6 of them gone within 20 minutes."""
    api.push(
        tg.bot_added(GROUP, HOST, local_ts(3, 8), BOT_USER),
        *joins(6, 100, local_ts(2, 10)),
        *joins(6, 200, local_ts(2, 11), leave_after_s=1200),
    )


def digests(api: FakeBotAPI) -> list[str]:
    return [
        c.params["text"]
        for c in api.calls_of("sendMessage")
        if int(c.params["chat_id"]) == CHAT and "📊" in c.params["text"] and c.status == 200
    ]


def alerts_sent(api: FakeBotAPI) -> list[str]:
    return [
        c.params["text"]
        for c in api.calls_of("sendMessage")
        if int(c.params["chat_id"]) == CHAT and "⚠️" in c.params["text"]
    ]


async def test_digest_jobs_run_at_local_time_in_each_group(api: FakeBotAPI, db_url: str) -> None:
    config = make_config(api, db_url, digest_time=time(9, 0))
    async with bot_running(config) as app:
        history(api)
        await settle(api)
        jq = app.job_queue
        assert jq is not None
        await app.bot_data["repo"].update_chat(CHAT, timezone="America/New_York")
        await schedule.schedule_chat(app, CHAT)
        [job] = jq.get_jobs_by_name(f"digest:{CHAT}")
        trigger = job.job.trigger
        # across the autumn DST change, 09:00 New York is 13:00 UTC, then 14:00 UTC
        before = trigger.get_next_fire_time(None, datetime(2026, 10, 31, 12, tzinfo=UTC))
        after = trigger.get_next_fire_time(None, datetime(2026, 11, 1, 12, tzinfo=UTC))
        assert before.astimezone(UTC).hour == 13
        assert after.astimezone(UTC).hour == 14
        assert before.astimezone(NY).hour == after.astimezone(NY).hour == 9
        await app.bot_data["repo"].update_chat(CHAT, timezone="Asia/Shanghai")
        await schedule.schedule_chat(app, CHAT)
        [job] = jq.get_jobs_by_name(f"digest:{CHAT}")
        nxt = job.job.trigger.get_next_fire_time(None, datetime(2026, 11, 20, tzinfo=UTC))
        assert nxt.astimezone(UTC) == datetime(2026, 11, 20, 1, 0, tzinfo=UTC)


async def test_missed_digest_is_sent_once_at_start_up(api: FakeBotAPI, db_url: str) -> None:
    config = make_config(api, db_url, digest_time=time(0, 0))  # always already due today
    async with bot_running(config):
        history(api)
        await settle(api)
    for _ in range(2):  # two restarts: the catch-up digest goes out once
        async with bot_running(config):
            await settle(api)
            await asyncio.sleep(0.3)
    sent = digests(api)
    assert len(sent) == 1
    yesterday = (datetime.now(SH).date() - timedelta(days=1)).isoformat()
    assert yesterday in sent[0]


async def test_alert_fires_once_for_a_breached_matured_cohort(
    api: FakeBotAPI, db_url: str
) -> None:
    config = make_config(api, db_url, min_sample=10, digest_time=time(23, 59))
    async with bot_running(config) as app:
        history(api)
        await settle(api)
        repo = app.bot_data["repo"]
        await repo.set_chat_target(CHAT, "retention_1h", 0.8, None, 1, datetime.now(UTC))
        now = datetime.now(UTC)
        assert await schedule.send_alerts(app, CHAT, now) == 1
        assert await schedule.send_alerts(app, CHAT, now + timedelta(minutes=15)) == 0
    async with bot_running(config) as app:  # and not after a restart either
        assert await schedule.send_alerts(app, CHAT, datetime.now(UTC)) == 0
    [alert] = alerts_sent(api)
    assert alert.startswith("⚠️ 1小时留存 低于目标：50.0%，目标 80%（差 30.0 个百分点）")
    assert "50.0%" in alert
    assert "80%" in alert


async def test_no_alert_below_min_sample(api: FakeBotAPI, db_url: str) -> None:
    config = make_config(api, db_url, min_sample=13)
    async with bot_running(config) as app:
        history(api)
        await settle(api)
        await app.bot_data["repo"].set_chat_target(
            CHAT, "retention_1h", 0.8, None, 1, datetime.now(UTC)
        )
        assert await schedule.send_alerts(app, CHAT, datetime.now(UTC)) == 0


async def test_retry_after_is_waited_out_not_dropped(api: FakeBotAPI, db_url: str) -> None:
    config = make_config(api, db_url, digest_time=time(23, 59))  # no start-up catch-up
    async with bot_running(config) as app:
        history(api)
        await settle(api)
        api.fail_next("sendMessage", count=1, error_code=429, retry_after=1)
        assert await schedule.send_digest(app, CHAT, datetime.now(UTC))
    assert len(digests(api)) == 1
    tries = [c.status for c in api.calls_of("sendMessage") if "📊" in c.params["text"]]
    assert tries == [429, 200]


async def test_two_processes_send_each_digest_once(api: FakeBotAPI, db_url: str) -> None:
    config = make_config(api, db_url, digest_time=time(23, 59))
    async with bot_running(config) as first:
        history(api)
        await settle(api)
        async with bot_running(config) as second:
            now = datetime.now(UTC)
            results = await asyncio.gather(
                *[schedule.send_digest(app, CHAT, now) for app in (first, second) * 3]
            )
    assert sum(results) == 1
    assert len(digests(api)) == 1


async def test_digest_notes_a_head_count_drift_from_telegram(api: FakeBotAPI, db_url: str) -> None:
    config = make_config(api, db_url, digest_time=time(23, 59))
    async with bot_running(config) as app:
        history(api)
        await settle(api)
        api.member_counts[CHAT] = 18  # 16 members + the host + the bot: no drift
        assert await schedule.send_digest(app, CHAT, datetime.now(UTC))
        api.member_counts[CHAT] = 40  # 38 members by Telegram's count, 16 by ours
        assert await schedule.send_digest(app, CHAT, datetime.now(UTC) + timedelta(days=1))
    first, second = digests(api)
    assert "数据质量" not in first
    assert "数据质量：Telegram 显示 38 名成员，opsbot 统计为 16。" in second


async def test_digest_jobs_firing_together_are_read_in_one_round(
    api: FakeBotAPI, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two groups' 09:00 jobs fire at once: one round reads both, and each group gets its
    own digest once."""
    other_id = CHAT - 1
    other = tg.group(other_id, "Club")
    api.admins[other_id] = api.admins[CHAT]
    api.member_counts[other_id] = 5
    api.chats[other_id] = other
    config = make_config(api, db_url, digest_time=time(23, 59))
    async with bot_running(config) as app:
        history(api)
        api.push(tg.bot_added(other, HOST, local_ts(3, 8), BOT_USER))
        await settle(api)
        rounds: list[list[int]] = []
        send_digests = schedule.send_digests

        async def spy(application: Any, chat_ids: list[int], now: datetime) -> dict[int, bool]:
            rounds.append(sorted(chat_ids))
            return await send_digests(application, chat_ids, now)

        monkeypatch.setattr(schedule, "send_digests", spy)
        jq = app.job_queue
        assert jq is not None
        jobs = [job for c in (CHAT, other_id) for job in jq.get_jobs_by_name(f"digest:{c}")]
        assert len(jobs) == 2
        await asyncio.gather(*(job.run(app) for job in jobs))
        await asyncio.gather(*(job.run(app) for job in jobs))  # sent: not again
    assert rounds == [sorted([CHAT, other_id])] * 2
    sent = sorted(
        (int(c.params["chat_id"]), c.params["text"].split(" ")[1])
        for c in api.calls_of("sendMessage")
        if c.params["text"].startswith("📊") and c.status == 200
    )
    assert sent == [(other_id, "Club"), (CHAT, "Camp")]


async def test_a_round_goes_on_when_a_joined_job_is_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A job cancelled while it waits for its round (shutdown) does not stop the round
    from answering the others; a round that fails fails every job in it."""
    calls: list[list[int]] = []

    async def sent_all(application: Any, chat_ids: list[int], now: datetime) -> dict[int, bool]:
        calls.append(sorted(chat_ids))
        await asyncio.sleep(0.01)
        if -3 in chat_ids:
            raise RuntimeError("database down")
        return dict.fromkeys(chat_ids, True)

    monkeypatch.setattr(schedule, "send_digests", sent_all)
    rounds = schedule.DigestRound(application=None)  # type: ignore[arg-type]
    first = asyncio.create_task(rounds.join(-1))
    await asyncio.sleep(0)
    second, third = asyncio.create_task(rounds.join(-2)), asyncio.create_task(rounds.join(-4))
    await asyncio.sleep(0)
    third.cancel()
    assert await first
    assert await second
    assert calls == [[-4, -2, -1]]
    failing = [asyncio.create_task(rounds.join(c)) for c in (-3, -5)]
    results = await asyncio.gather(*failing, return_exceptions=True)
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]
