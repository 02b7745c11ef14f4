"""Property test of the daily rollups: random interleavings of live events (in order, late,
in batches), imports (the bulk writer), /forgetme, /purge, a migration to a supergroup, and
changes of timezone and windows. After every step, every day's numbers as the report
service reads them (rollup rows where final, raw rows elsewhere) equal the pure metrics
recomputed from the raw rows, on SQLite and PostgreSQL.

The engine's numbers against a naive replay of the rules are tests/test_engine_property.py
(which reads through the same rollups: its later reports are served from kept rows)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import insights, metrics, service
from bot.config import Config, GroupSettings
from bot.events import HostChange, MemberKind, MembershipEvent, Post
from bot.tracking import baseline_count
from storage.bulk import BulkWriter
from storage.repo import Repo
from tests.test_engine_property import BOTS, WINDOW_S, Log, feed_events, logs, naive_posts

_chat_ids = itertools.count(-1_002_000_000_001, -1)
ZONES = ["Asia/Shanghai", "America/New_York", "Europe/Berlin", "UTC"]
WINDOW_SETS = [("1h", "day0", "day1"), ("1h", "day0", "day1", "24h", "day2"), ("3h", "day3")]

ops = st.one_of(
    st.tuples(st.just("next"), st.integers(1, 8), st.booleans()),  # in order; batched?
    st.tuples(st.just("late"), st.integers(0, 50)),  # one event of later (or earlier) on
    st.tuples(st.just("import"), st.integers(1, 8)),
    st.tuples(st.just("forget"), st.integers(0, 20)),
    st.tuples(st.just("purge")),
    st.tuples(st.just("migrate")),
    st.tuples(st.just("timezone"), st.sampled_from(ZONES)),
    st.tuples(st.just("windows"), st.sampled_from(WINDOW_SETS)),
)


@dataclass
class World:
    repo: Repo
    log: Log
    chat_id: int
    config: Config
    todo: list[tuple[int, Any]]  # (message id, event) not stored yet
    posts: dict[int, Any]
    clock: datetime  # the latest event stored

    async def store_live(self, events: list[tuple[int, Any]], batched: bool) -> None:
        chunk = [(self.chat_id, mid, ev) for mid, ev in events]
        if batched:
            async with self.repo.batch():
                await feed_events(self.repo, chunk, self.posts)
        else:
            await feed_events(self.repo, chunk, self.posts)
        self.clock = max([self.clock, *(ev[0] for _, ev in events)])

    async def store_imported(self, events: list[tuple[int, Any]]) -> None:
        """As `opsbot import` writes: the bulk writer, one transaction, then the bump."""
        async with BulkWriter.transaction(self.repo.engine) as w:
            for mid, (ts, kind, u, _) in events:
                if kind in ("join", "leave"):
                    await w.membership(MembershipEvent(self.chat_id, u, MemberKind(kind), ts, mid))
                elif kind in ("promote", "demote") and u not in BOTS:
                    await w.host(HostChange(self.chat_id, u, ts, kind == "promote", mid))
                elif kind == "post":
                    _, _, sender, role, _, question, topic = self.posts[mid]
                    post = Post(self.chat_id, mid, ts, role, sender, is_question=question)
                    await w.post(post, None, [])
            await w.bump(self.chat_id)
        self.repo.forget_cached()
        self.clock = max([self.clock, *(ev[0] for _, ev in events)])

    async def start(self) -> None:
        await self.repo.ensure_chat(self.chat_id, "g", "supergroup")
        await self.repo.record_users([(b, True, "bot", None) for b in BOTS])
        await self.repo.sync_admins(self.chat_id, {1}, self.log.start)
        count = len(self.log.baseline) + 3
        await self.repo.start_tracking(
            self.chat_id, self.log.start, baseline_count(count, {1, *BOTS})
        )


async def apply(world: World, op: tuple[Any, ...]) -> None:
    repo, kind = world.repo, op[0]
    if kind == "next":
        events, world.todo = world.todo[: op[1]], world.todo[op[1] :]
        await world.store_live(events, op[2])
    elif kind == "late" and world.todo:
        event = world.todo.pop(op[1] % len(world.todo))
        await world.store_live([event], False)
    elif kind == "import":
        events, world.todo = world.todo[: op[1]], world.todo[op[1] :]
        await world.store_imported(events)
    elif kind == "forget":
        people = sorted({u for (_, _, u, _) in world.log.events} - {1, *BOTS})
        if people:
            await repo.forget_user(people[op[1] % len(people)])
    elif kind == "purge":
        await repo.purge_chat(world.chat_id)
        await world.start()  # the group goes on; tracking starts afresh
    elif kind == "migrate":
        new_id = next(_chat_ids)
        assert await repo.migrate_chat(world.chat_id, new_id)
        world.chat_id = new_id
    elif kind == "timezone":
        await repo.update_chat(world.chat_id, timezone=op[1])
    elif kind == "windows":
        d = world.config.defaults
        world.config = Config(
            defaults=GroupSettings(
                timezone=d.timezone, windows=op[1], discussion_window_s=WINDOW_S
            )
        )


async def check(world: World, now: datetime) -> None:
    """The service's days (rollups where final; the whole history or only the people
    with events since the last kept day) equal a recomputation from raw rows."""
    repo = world.repo
    settings_ = await service.group_settings(repo, world.config, world.chat_id)
    tz = settings_.tz
    first = world.log.first_day - timedelta(days=2)
    last = metrics.local_day(max(now, world.clock), tz) + timedelta(days=1)
    # /retention's read (no activity but of the days it keeps) first: what it keeps is
    # then served to the reads below
    cohorts = await service.load_group(
        repo, world.config, world.chat_id, first, last, now=now, active=False, days_only=True
    )
    data = await service.load_group(repo, world.config, world.chat_id, first, last, now=now)
    history = service.group_history(await repo.history(world.chat_id), settings_)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    counts = await repo.active_user_counts(
        world.chat_id, [metrics.local_day_bounds(d, tz) for d in days]
    )
    active = {(days[i], level): n for (i, level), n in counts.items()}
    windows = metrics.rollup_windows(settings_.windows)
    # the reports' path: the days after a kept one from the people with events since
    recent = await service.load_group(
        repo, world.config, world.chat_id, first, last, now=now, days_only=True
    )
    for day in days:
        expected = metrics.day_numbers(history, day, windows, now, active)
        assert data.days[day] == expected, day
        assert recent.days[day] == expected, day
        assert cohorts.days[day].cells == expected.cells, day
        assert cohorts.days[day].joins == expected.joins, day
        # the digest's top source, kept with the row or from the history
        top = insights.top_source(history, day, now)
        assert service.top_source(data, day, now) == top, day
        assert service.top_source(recent, day, now) == top, day


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    log=logs(),
    steps=st.lists(
        st.tuples(ops, st.sampled_from([0.5, 3.0, 30.0, 80.0, -20.0])), min_size=3, max_size=10
    ),
)
async def test_rollups_equal_recomputation_from_raw_rows(
    repo: Repo, log: Log, steps: list[tuple[tuple[Any, ...], float]]
) -> None:
    """Each step, then a report `hours` after the latest event stored (or before it), and
    one a day later: final days come from rollup rows kept by earlier reports, and must
    still be right."""
    zone = str(log.tz)
    config = Config(defaults=GroupSettings(timezone=zone, discussion_window_s=WINDOW_S))
    posts = {p[0]: p for p in naive_posts(log)}
    todo = list(enumerate(log.events, start=1))
    world = World(repo, log, next(_chat_ids), config, todo, posts, log.start)
    await world.start()
    await check(world, log.start + timedelta(hours=1))
    for op, hours in [*steps, (("next", 100, False), 80.0)]:
        await apply(world, op)
        await check(world, world.clock + timedelta(hours=hours))
        await check(world, world.clock + timedelta(hours=hours))  # served from what was kept
        # a day later, nothing written since: the pending cells of the rows kept just now
        # are past their checkpoints, and computed (the rest of each row as kept)
        await check(world, world.clock + timedelta(hours=hours + 26))
