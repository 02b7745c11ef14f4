"""Daily rollups: which day a write makes dirty (DST zones included), a rolled-back batch,
the daily_metrics view, and `opsbot db refresh`."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text

from bot import metrics, service
from bot.cli import main
from bot.config import Config, GroupSettings
from bot.events import MemberKind, MembershipEvent, Post, ReplyTarget, Role
from storage.models import Chat, DailyRollup
from storage.repo import Repo
from storage.rollups import EVERYTHING
from tests.test_import import camp_day, export

BERLIN = ZoneInfo("Europe/Berlin")  # 2026-03-29 has 23 hours (02:00 -> 03:00)
NEW_YORK = ZoneInfo("America/New_York")  # 2026-11-01 has 25 hours
CHAT = -100_555
START = datetime(2026, 3, 20, 8, tzinfo=UTC)
CONFIG = Config(defaults=GroupSettings(timezone="Europe/Berlin", discussion_window_s=600))


def local(tz: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=tz).astimezone(UTC)


# ---- the invalidation rule (pure) ------------------------------------------------------


def kept_row(
    day: date, windows: list[str], now: datetime, tz: ZoneInfo = BERLIN
) -> metrics.DayNumbers:
    """Day D's numbers as a report at `now` keeps them: one join early on D."""
    join = metrics.local_day_bounds(day, tz)[0] + timedelta(hours=1)
    h = metrics.GroupHistory(tz, START, 0, [MembershipEvent(CHAT, 7, MemberKind.JOIN, join)])
    return metrics.day_numbers(h, day, metrics.rollup_windows(windows), now, {})


def horizon(day: date, windows: list[str], now: datetime, tz: ZoneInfo = BERLIN) -> datetime:
    return metrics.row_horizon(
        kept_row(day, windows, now, tz), tz, metrics.rollup_windows(windows)
    )


def test_a_row_is_kept_once_its_day_and_hour_checkpoints_are_over() -> None:
    day = date(2026, 3, 28)
    assert metrics.day_keepable_at(day, BERLIN, ["day0"]) == local(BERLIN, 2026, 3, 29, 0, 0)
    # 3 real hours after midnight on the 23-hour day: 04:00 CEST, not 03:00
    assert metrics.day_keepable_at(day, BERLIN, ["3h", "day1"]) == local(BERLIN, 2026, 3, 29, 4, 0)


def test_hour_windows_reach_forward_in_real_hours_across_the_dst_gap() -> None:
    """The 28th's joins have 3h checkpoints up to 04:00 CEST on the 29th: an event at
    03:30 CEST (01:30 UTC) can change them; with 1h, its row is out of reach by then."""
    event = local(BERLIN, 2026, 3, 29, 3, 30)
    now = local(BERLIN, 2026, 3, 29, 12, 0)
    assert horizon(date(2026, 3, 28), ["3h"], now) > event
    assert horizon(date(2026, 3, 28), ["1h"], now) <= event


def test_a_pending_day_cell_holds_no_state_until_its_checkpoint() -> None:
    """At noon on the 29th the 28th's day1 cell is wholly pending: the row reads only the
    state up to 01:00 (its 1h checkpoints) and serves until the end of the 29th."""
    day, noon = date(2026, 3, 28), local(BERLIN, 2026, 3, 29, 12, 0)
    row = kept_row(day, ["day1"], noon)
    assert row.cells["day1"] == metrics.RetentionCell(0, 0, 1)
    assert horizon(day, ["day1"], noon) == local(BERLIN, 2026, 3, 29, 1, 0)
    windows = metrics.rollup_windows(["day1"])
    assert metrics.serves_at(row, BERLIN, windows, local(BERLIN, 2026, 3, 29, 23, 59))
    assert not metrics.serves_at(row, BERLIN, windows, local(BERLIN, 2026, 3, 30, 0, 0))
    assert not metrics.serves_at(row, BERLIN, windows, local(BERLIN, 2026, 3, 29, 0, 30))
    # computed after the checkpoint, the cell is final and so reaches to it
    later = local(BERLIN, 2026, 3, 30, 9, 0)
    assert horizon(day, ["day1"], later) == local(BERLIN, 2026, 3, 30, 0, 0)


def test_a_day_is_final_once_over_and_its_last_checkpoint_is_past() -> None:
    day = date(2026, 3, 28)
    assert metrics.day_final_at(day, BERLIN, ["1h"]) == local(BERLIN, 2026, 3, 29, 1, 0)
    # day1 of the 28th ends at midnight after the 23-hour day: 22:00 UTC
    assert metrics.day_final_at(day, BERLIN, ["1h", "day1"]) == datetime(
        2026, 3, 29, 22, tzinfo=UTC
    )


def test_no_event_at_or_after_a_rows_horizon_changes_it() -> None:
    """The rule against the pure metrics: a late leave changes every kept row whose horizon
    is after it (here the 28th's, through its 3h cell) and none other."""
    tz, windows = BERLIN, metrics.rollup_windows(["3h"])
    join_ts = local(tz, 2026, 3, 28, 23, 0)
    late = local(tz, 2026, 3, 29, 1, 30)  # before the 3h checkpoint of the join
    now = local(tz, 2026, 4, 5, 0, 0)

    def numbers(events: list[MembershipEvent]) -> dict[date, metrics.DayNumbers]:
        h = metrics.GroupHistory(tz, START, 0, events)
        days = [date(2026, 3, 26) + timedelta(days=i) for i in range(6)]
        return {d: metrics.day_numbers(h, d, windows, now, {}) for d in days}

    before = numbers([MembershipEvent(CHAT, 7, MemberKind.JOIN, join_ts)])
    after = numbers(
        [
            MembershipEvent(CHAT, 7, MemberKind.JOIN, join_ts),
            MembershipEvent(CHAT, 7, MemberKind.LEAVE, late),
        ]
    )
    for d, n in before.items():
        if metrics.row_horizon(n, tz, windows) <= late:
            assert after[d] == n, d
    assert before[date(2026, 3, 28)] != after[date(2026, 3, 28)]


# ---- what a write marks ----------------------------------------------------------------


async def dirty_mark(repo: Repo, chat_id: int = CHAT) -> int | None:
    async with repo.engine.connect() as conn:
        mark: int | None = (
            await conn.execute(select(Chat.rollups_dirty_ts).where(Chat.chat_id == chat_id))
        ).scalar()
        return mark


async def kept(repo: Repo) -> list[Any]:
    async with repo.engine.connect() as conn:
        rows = await conn.execute(select(DailyRollup).order_by(DailyRollup.day))
        return list(rows)


async def tracked_group(repo: Repo) -> None:
    await repo.ensure_chat(CHAT, "g", "supergroup")
    await repo.start_tracking(CHAT, START, 10)
    for i, user in enumerate((201, 202, 203)):
        ts = START + timedelta(days=i, hours=2)
        await repo.record_membership(MembershipEvent(CHAT, user, MemberKind.JOIN, ts))
    await repo.record_post(Post(CHAT, 1, START + timedelta(hours=3), Role.HOST, 1), None, 600)


async def report_all(repo: Repo, now: datetime) -> service.GroupData:
    return await service.load_group(
        repo, CONFIG, CHAT, date(2026, 3, 19), metrics.local_day(now, BERLIN), now=now
    )


async def test_a_report_consumes_the_mark_and_keeps_final_days(repo: Repo) -> None:
    await tracked_group(repo)
    assert await dirty_mark(repo) == EVERYTHING  # tracking started: everything
    await report_all(repo, datetime(2026, 3, 30, 12, tzinfo=UTC))
    assert await dirty_mark(repo) is None
    rows = {r.day: r for r in await kept(repo)}
    # final: over and past day1 (the 28th ends its day1 at midnight after the 29th)
    assert min(rows) == "2026-03-19"
    assert [d for d, r in rows.items() if r.final][-1] == "2026-03-28"
    # the 29th is over and past its 1h checkpoints: kept, not final; nobody joined that
    # day, so no cell is pending and the row reaches to its day1 checkpoint
    assert max(rows) == "2026-03-29"
    assert not rows["2026-03-29"].final
    assert json.loads(rows["2026-03-29"].cells)["day1"] == [0, 0, 0]
    assert rows["2026-03-29"].horizon_ts == int(local(BERLIN, 2026, 3, 31, 0, 0).timestamp())


async def test_a_kept_rows_pending_cell_is_computed_once_its_checkpoint_passes(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 21st is kept at noon on the 22nd with its day1 cell wholly pending. A leave on
    the 22nd after the row's horizon keeps the row; the next morning the cell is computed
    from the cohort's events (one of two stayed), the rest of the row served as kept."""
    await repo.ensure_chat(CHAT, "g", "supergroup")
    await repo.start_tracking(CHAT, START, 10)
    for user, hour in ((201, 10), (202, 11)):
        join = local(BERLIN, 2026, 3, 21, hour, 0)
        await repo.record_membership(MembershipEvent(CHAT, user, MemberKind.JOIN, join))
    day = date(2026, 3, 21)
    first = await report_all(repo, local(BERLIN, 2026, 3, 22, 12, 0))
    assert first.days[day].cells["day1"] == metrics.RetentionCell(0, 0, 2)
    leave = local(BERLIN, 2026, 3, 22, 15, 0)
    await repo.record_membership(MembershipEvent(CHAT, 201, MemberKind.LEAVE, leave))
    computed: list[date] = []
    finished: list[date] = []
    day_numbers, finish = metrics.day_numbers, metrics.finish

    def spy_day_numbers(h: Any, d: date, *args: Any) -> metrics.DayNumbers:
        computed.append(d)
        return day_numbers(h, d, *args)

    def spy_finish(h: Any, kept: metrics.DayNumbers, now: datetime) -> metrics.DayNumbers:
        finished.append(kept.day)
        return finish(h, kept, now)

    monkeypatch.setattr(metrics, "day_numbers", spy_day_numbers)
    monkeypatch.setattr(metrics, "finish", spy_finish)
    now = local(BERLIN, 2026, 3, 23, 9, 0)
    data = await report_all(repo, now)
    assert finished == [day]
    assert day not in computed
    assert data.days[day].cells["day1"] == metrics.RetentionCell(1, 2, 0)
    history = service.group_history(await repo.history(CHAT), CONFIG.for_chat(CHAT))
    windows = metrics.rollup_windows(CONFIG.for_chat(CHAT).windows)
    assert data.days[day] == day_numbers(history, day, windows, now, data.active_counts)
    rows = {r.day: r for r in await kept(repo)}
    assert rows["2026-03-21"].final
    assert json.loads(rows["2026-03-21"].cells)["day1"] == [1, 2, 0]


async def test_a_late_join_of_someone_known_marks_its_own_time(repo: Repo) -> None:
    await tracked_group(repo)
    await report_all(repo, datetime(2026, 3, 30, 12, tzinfo=UTC))
    late = START + timedelta(days=3)
    await repo.record_membership(MembershipEvent(CHAT, 201, MemberKind.LEAVE, late))
    assert await dirty_mark(repo) == int(late.timestamp())
    await repo.record_membership(
        MembershipEvent(CHAT, 201, MemberKind.JOIN, late + timedelta(hours=5))
    )
    assert await dirty_mark(repo) == int(late.timestamp())  # min-merged


async def test_a_first_event_that_is_a_leave_marks_everything(repo: Repo) -> None:
    """Someone first seen leaving was a member from before tracking (SPEC 2)."""
    await tracked_group(repo)
    await report_all(repo, datetime(2026, 3, 30, 12, tzinfo=UTC))
    leave = MembershipEvent(CHAT, 299, MemberKind.LEAVE, START + timedelta(days=5))
    await repo.record_membership(leave)
    assert await dirty_mark(repo) == EVERYTHING


async def test_a_first_join_after_own_posts_marks_everything(repo: Repo) -> None:
    await tracked_group(repo)
    await repo.record_post(Post(CHAT, 9, START + timedelta(days=1), Role.MEMBER, 300), None, 600)
    await report_all(repo, datetime(2026, 3, 30, 12, tzinfo=UTC))
    await repo.record_membership(
        MembershipEvent(CHAT, 300, MemberKind.JOIN, START + timedelta(days=6))
    )
    assert await dirty_mark(repo) == EVERYTHING


async def test_forgetme_marks_only_the_persons_groups_from_their_first_row(repo: Repo) -> None:
    await tracked_group(repo)
    other = CHAT - 1
    await repo.ensure_chat(other, "other", "supergroup")
    await repo.start_tracking(other, START, 5)
    await report_all(repo, datetime(2026, 3, 30, 12, tzinfo=UTC))
    await service.load_group(
        repo,
        CONFIG,
        other,
        date(2026, 3, 19),
        date(2026, 3, 30),
        now=datetime(2026, 3, 30, 12, tzinfo=UTC),
    )
    assert await dirty_mark(repo) is None
    assert await dirty_mark(repo, other) is None
    await repo.forget_user(202)  # joined START + 1 day 2 h, in CHAT only
    assert await dirty_mark(repo) == int((START + timedelta(days=1, hours=2)).timestamp())
    assert await dirty_mark(repo, other) is None


async def test_a_reply_marks_the_day_of_the_old_message_it_makes_active(repo: Repo) -> None:
    await tracked_group(repo)
    old = START + timedelta(days=1, hours=4)
    await repo.record_post(Post(CHAT, 10, old, Role.MEMBER, 202), None, 600)
    await report_all(repo, datetime(2026, 3, 30, 12, tzinfo=UTC))
    reply = Post(CHAT, 11, START + timedelta(days=9), Role.MEMBER, 203)
    await repo.record_post(reply, ReplyTarget(10, old, Role.MEMBER, 202), 600)
    assert await dirty_mark(repo) == int(old.timestamp())  # 202 is active on that day


async def test_a_rolled_back_batch_leaves_rollups_and_the_mark_unchanged(repo: Repo) -> None:
    await tracked_group(repo)
    now = datetime(2026, 3, 30, 12, tzinfo=UTC)
    first = await report_all(repo, now)
    rows = await kept(repo)
    assert rows
    assert await dirty_mark(repo) is None

    async def crash_mid_batch() -> None:
        async with repo.batch():
            await repo.record_membership(
                MembershipEvent(CHAT, 201, MemberKind.LEAVE, START + timedelta(hours=2, minutes=5))
            )
            await repo.record_post(
                Post(CHAT, 20, START + timedelta(hours=4), Role.MEMBER, 202),
                ReplyTarget(1, START + timedelta(hours=3), Role.HOST, 1),
                600,
            )
            inside = await report_all(repo, now)  # rows recomputed and kept in the batch
            assert inside.days[date(2026, 3, 20)] != first.days[date(2026, 3, 20)]
            raise RuntimeError("crash mid-batch")

    with pytest.raises(RuntimeError):
        await crash_mid_batch()
    assert await kept(repo) == rows
    assert await dirty_mark(repo) is None
    assert (await report_all(repo, now)).days == first.days


# ---- the view for BI tools, and the refresh ----------------------------------------------


async def test_daily_metrics_view_has_the_report_numbers(repo: Repo) -> None:
    await tracked_group(repo)
    await repo.record_post(
        Post(CHAT, 30, START + timedelta(hours=4), Role.MEMBER, 201),
        ReplyTarget(1, START + timedelta(hours=3), Role.HOST, 1),
        600,
    )
    now = datetime(2026, 3, 30, 12, tzinfo=UTC)
    await report_all(repo, now)
    async with repo.engine.connect() as conn:
        rows = (
            (
                await conn.execute(
                    text("SELECT * FROM daily_metrics WHERE chat_id = :c ORDER BY day"),
                    {"c": CHAT},
                )
            )
            .mappings()
            .all()
        )
    assert [r["day"] for r in rows][:2] == ["2026-03-19", "2026-03-20"]
    for r in rows:
        report = await service.day_report(repo, CONFIG, CHAT, date.fromisoformat(r["day"]), now)
        active = report["active"]
        assert isinstance(active, dict)
        assert (r["joins"], r["leaves"], r["headcount_end"], r["audience"]) == (
            report["joins"],
            report["leaves"],
            report["headcount_end"],
            active["audience"],
        )
        assert r["response_users"] == active["response"]["users"]
        assert service.r4(r["response_rate"]) == active["response"]["rate"]
        retention = report["retention"]
        assert isinstance(retention, dict)
        assert (r["retained_day0"], r["matured_day0"]) == (
            retention["day0"]["retained"],
            retention["day0"]["matured"],
        )
    day20 = rows[1]
    assert (day20["joins"], day20["response_users"], day20["headcount_end"]) == (1, 1, 11)
    assert day20["response_rate"] == pytest.approx(1 / 11)
    assert day20["retention_1h"] == 1.0


def test_db_refresh_fills_the_view(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """After an import, `opsbot db refresh` keeps every final day; the view shows what
    `opsbot report --json` prints for that day."""
    db_file = tmp_path / "opsbot.db"
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[storage]\nurl = "sqlite:///{db_file}"\n')
    path = str(export(tmp_path, camp_day()))
    assert main(["import", path, "--host", "1", "--config", str(cfg)]) == 0
    capsys.readouterr()
    with sqlite3.connect(db_file) as conn:
        assert conn.execute("SELECT count(*) FROM daily_metrics").fetchone() == (0,)
    assert main(["db", "refresh", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    with sqlite3.connect(db_file) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM daily_metrics ORDER BY day").fetchall()
    assert out == f"daily rollups: {len(rows):,} days kept\n"
    assert len(rows) > 1
    busiest = max(rows, key=lambda r: r["joins"])
    assert busiest["joins"] > 0
    for r in (rows[0], busiest):
        args = ["report", "--chat", str(r["chat_id"]), "--date", r["day"], "--json"]
        assert main([*args, "--config", str(cfg)]) == 0
        report = json.loads(capsys.readouterr().out)
        assert (r["joins"], r["leaves"], r["headcount_end"], r["audience"]) == (
            report["joins"],
            report["leaves"],
            report["headcount_end"],
            report["active"]["audience"],
        )


async def test_a_digest_round_reads_each_group_as_alone(repo: Repo) -> None:
    """Groups in three timezones, one of them with targets set in chat, read in one round
    (after an earlier round kept rows, some with pending cells, and a late leave dirtied
    one group): each digest equals one computed from that group's whole history."""
    zones = {-100_601: "Europe/Berlin", -100_602: "America/New_York", -100_603: "Asia/Tokyo"}
    for n, (chat_id, zone) in enumerate(zones.items()):
        await repo.ensure_chat(chat_id, f"g{n}", "supergroup")
        await repo.start_tracking(chat_id, START, 10 + n)
        await repo.update_chat(chat_id, timezone=zone)
        for i in range(12):
            join = START + timedelta(hours=7 * i + n)
            user = 300 + 20 * n + i
            await repo.record_membership(MembershipEvent(chat_id, user, MemberKind.JOIN, join))
            if i % 3 == n % 3:
                leave = join + timedelta(hours=20 + i)
                event = MembershipEvent(chat_id, user, MemberKind.LEAVE, leave)
                await repo.record_membership(event)
    await repo.set_chat_target(-100_602, "retention_day1", 0.5, None, 1, START)
    ids = sorted(zones)
    await service.digests(repo, CONFIG, ids, datetime(2026, 3, 22, 12, tzinfo=UTC))
    late = MembershipEvent(-100_601, 300, MemberKind.LEAVE, datetime(2026, 3, 21, 9, tzinfo=UTC))
    await repo.record_membership(late)
    now = datetime(2026, 3, 23, 9, 30, tzinfo=UTC)
    round_ = await service.digests(repo, CONFIG, ids, now)
    for chat_id in ids:
        settings = await service.group_settings(repo, CONFIG, chat_id)
        targets = await service.targets_in_force(repo, settings, chat_id)
        day = service.digest_day(settings, now)
        whole = await service.load_group(repo, CONFIG, chat_id, date(2026, 3, 19), day)
        got = round_[chat_id]
        assert got.report == service.report_from(whole, targets, day, now), chat_id
        assert got.net == service.net_change(whole, day, now), chat_id
        assert got.top_source == service.top_source(whole, day, now), chat_id
        assert got.headcount_now == metrics.headcount_at(whole.history, now), chat_id
    assert round_[-100_602].report["targets"]  # the target set in chat is reported
