"""Property test: random group histories fed through storage; the report service's numbers
equal those of a deliberately naive simulation of SPEC 3, 4 and 9 (SQLite and PostgreSQL).
Posts fall in forum topics (or the General topic), and an admin bot posts too.

The naive side knows every person, including the baseline members the engine only knows
as a count, and replays the whole log from scratch for every question it answers.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import service
from bot.config import Config, GroupSettings
from bot.events import HostChange, MemberKind, MembershipEvent, Post, ReplyTarget, Role
from bot.tracking import baseline_count
from storage.repo import Repo

ZONES = [
    ("Asia/Shanghai", date(2026, 11, 18)),
    ("America/New_York", date(2026, 10, 30)),  # 2026-11-01 has 25 hours
    ("Europe/Berlin", date(2026, 3, 27)),  # 2026-03-29 has 23 hours
]
WINDOW_S = 600
BOT = 9_000
GUARD = 9_001  # another bot, an administrator of the group (an anti-spam bot)
BOTS = (BOT, GUARD)
TOPICS = [None, 7, 8]  # forum topics; None: the General topic
_chat_ids = itertools.count(-1_000_000_000_001, -1)


@dataclass
class Log:
    """A generated history: every event at its minute, in order."""

    tz: ZoneInfo
    first_day: date
    start: datetime  # tracking start
    baseline: list[int]
    events: list[tuple[datetime, str, int, dict[str, object]]] = field(default_factory=list)


@st.composite
def logs(draw: st.DrawFn) -> Log:
    zone, first_day = draw(st.sampled_from(ZONES))
    tz = ZoneInfo(zone)
    start = datetime.combine(first_day, datetime.min.time(), tz).astimezone(UTC) + timedelta(
        hours=draw(st.integers(1, 10))
    )
    baseline = list(range(100, 100 + draw(st.integers(0, 4))))
    newcomers = list(range(200, 200 + draw(st.integers(1, 6))))
    hosts = [1]
    log = Log(tz, first_day, start, baseline)
    in_group = set(baseline) | {1, *BOTS}
    hosts = {1}
    everyone = baseline + newcomers + [1, *BOTS]
    minute = 0
    calm = (
        [2, 5, 30, 90, 240, 700],
        ["join", "leave", "post", "post", "post", "promote", "demote"],
    )
    # a quick-fire discussion across topics: questions and answers within windows
    chatty = ([1, 2, 3], ["join", "leave", "promote", "demote", *["post"] * 9])
    gaps, kinds = draw(st.sampled_from([calm, chatty]))
    # only what Telegram allows: join when out, leave/post/promote when in, demote a host
    for _ in range(draw(st.integers(5, 45))):
        minute += draw(st.sampled_from(gaps))
        ts = start + timedelta(minutes=minute)
        kind = draw(st.sampled_from(kinds))
        eligible = {
            "join": [u for u in everyone if u not in in_group],
            "leave": [u for u in everyone if u in in_group and u not in BOTS],
            "post": sorted(in_group),
            "promote": [u for u in everyone if u in in_group and u not in hosts and u not in BOTS],
            "demote": sorted(hosts),
        }[kind]
        if not eligible:
            continue
        user = draw(st.sampled_from(eligible))
        extra: dict[str, object] = {}
        if kind == "join":
            in_group.add(user)
        elif kind == "leave":
            in_group.discard(user)
        elif kind == "promote":
            hosts.add(user)
        elif kind == "demote":
            hosts.discard(user)
        else:
            extra["question"] = draw(st.booleans())
            extra["reply"] = draw(st.one_of(st.none(), st.integers(0, 30)))
            extra["topic"] = draw(st.sampled_from(TOPICS))
        log.events.append((ts, kind, user, extra))
    return log


# ---- the naive side -------------------------------------------------------------------


def naive_state(
    log: Log, user: int, instant: datetime, inclusive: bool = False
) -> tuple[bool, bool]:
    """(in the group, host) after every event before `instant` (or at it, if inclusive)."""
    in_group, host = user in log.baseline or user == 1, user == 1
    for ts, kind, u, _ in log.events:
        if u != user or ts > instant or (ts == instant and not inclusive):
            continue
        if kind == "join":
            in_group = True
        elif kind == "leave":
            in_group = False
        elif kind in ("promote", "demote"):
            host = kind == "promote"
    return in_group, host


def is_member(log: Log, user: int, instant: datetime) -> bool:
    in_group, host = naive_state(log, user, instant)
    return in_group and not host and user not in BOTS


def people(log: Log) -> set[int]:
    return {u for _, _, u, _ in log.events} | set(log.baseline)


def day_bounds(log: Log, day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, datetime.min.time(), log.tz)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), log.tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def naive_cohort(log: Log, day: date) -> dict[int, datetime]:
    lo, hi = day_bounds(log, day)
    cohort: dict[int, datetime] = {}
    for ts, kind, u, _ in log.events:
        if kind != "join" or not lo <= ts < hi or u in cohort or u in BOTS:
            continue
        was_in, _ = naive_state(log, u, ts)
        _, host = naive_state(log, u, ts, inclusive=True)
        if not was_in and not host:
            cohort[u] = ts
    return cohort


def naive_retention(log: Log, day: date, now: datetime) -> dict[str, tuple[int, int, int]]:
    out = {}
    for name in ("1h", "day0", "day1"):
        retained = matured = pending = 0
        for u, ts in naive_cohort(log, day).items():
            if name == "1h":
                checkpoint = ts + timedelta(hours=1)
            else:
                offset = 1 if name == "day0" else 2
                checkpoint = day_bounds(log, day + timedelta(days=offset - 1))[1]
            if checkpoint > now:
                pending += 1
                continue
            matured += 1
            retained += naive_state(log, u, checkpoint)[0]
        out[name] = (retained, matured, pending)
    return out


def naive_leaves(log: Log, day: date) -> int:
    lo, hi = day_bounds(log, day)
    return sum(
        1
        for ts, kind, u, _ in log.events
        if kind == "leave" and lo <= ts < hi and is_member(log, u, ts)
    )


def naive_audience(log: Log, day: date) -> int:
    lo, hi = day_bounds(log, day)
    present = set()
    for u in people(log):
        instants = [lo] + [
            ts + timedelta(microseconds=1)
            for ts, _, x, _ in log.events
            if x == u and lo <= ts < hi
        ]
        if any(is_member(log, u, i) for i in instants):
            present.add(u)
    return len(present)


def naive_posts(
    log: Log,
) -> list[tuple[int, datetime, int, Role, int | None, bool, int | None]]:
    """(message id, ts, sender, role at send time, reply-to message id, question, topic)."""
    posts = []
    for mid, (ts, kind, u, extra) in enumerate(log.events, start=1):
        if kind != "post":
            continue
        in_group, host = naive_state(log, u, ts, inclusive=True)
        role = Role.BOT if u in BOTS else Role.HOST if host else Role.MEMBER
        reply = extra["reply"]
        target = None
        if isinstance(reply, int) and posts:
            target = posts[reply % len(posts)][0]
        topic = extra["topic"]
        assert topic is None or isinstance(topic, int)
        posts.append((mid, ts, u, role, target, bool(extra["question"]), topic))
    return posts


def naive_active(log: Log, day: date) -> tuple[set[int], set[int]]:
    lo, hi = day_bounds(log, day)
    posts = naive_posts(log)
    by_id = {p[0]: p for p in posts}
    response: set[int] = set()
    interaction: set[tuple[int, datetime]] = set()
    for mid, ts, u, role, target, _, topic in posts:
        if role != Role.MEMBER:
            continue
        if target is not None:
            t = by_id[target]
            if t[3] == Role.HOST and lo <= ts < hi:
                response.add(u)
            if t[3] == Role.MEMBER and t[2] != u:
                interaction |= {(u, ts), (t[2], t[1])}
            continue
        for q in posts:  # questions and host posts of the same forum topic only
            if q[0] >= mid or not q[5] or q[3] != Role.MEMBER or q[2] == u or q[6] != topic:
                continue
            if not 0 <= (ts - q[1]).total_seconds() <= WINDOW_S:
                continue
            if any(h[3] == Role.HOST and h[6] == topic and q[0] < h[0] < mid for h in posts):
                continue
            interaction |= {(u, ts), (q[2], q[1])}
    return response, {u for u, ts in interaction if lo <= ts < hi}


# ---- the engine side ------------------------------------------------------------------


async def feed(
    repo: Repo, log: Log, chat_ids: Sequence[int], batches: list[int] | None = None
) -> None:
    """Store the log's events in each group (interleaved, event by event), one by one or in
    batches of the given sizes (as ingest batches a fetch of updates: one transaction,
    posts and joins/leaves written together at the end)."""
    for chat_id in chat_ids:
        await repo.ensure_chat(chat_id, "g", "supergroup")
        await repo.record_users([(b, True, "bot", None) for b in BOTS])
        await repo.sync_admins(chat_id, {1}, log.start)
        # Telegram's count: the baseline members, the host, the admin bot and ourselves
        count = len(log.baseline) + 3
        await repo.start_tracking(chat_id, log.start, baseline_count(count, {1, *BOTS}))
    posts = {p[0]: p for p in naive_posts(log)}
    events = [
        (chat_id, mid, ev) for mid, ev in enumerate(log.events, start=1) for chat_id in chat_ids
    ]
    sizes = itertools.cycle(batches or [1])
    while events:
        size = next(sizes)
        chunk, events = events[:size], events[size:]
        if batches:
            async with repo.batch():
                await feed_events(repo, chunk, posts)
        else:
            await feed_events(repo, chunk, posts)


async def feed_events(repo: Repo, events: Any, posts: Any) -> None:
    for chat_id, mid, (ts, kind, u, _) in events:
        if kind in ("join", "leave"):
            await repo.record_membership(MembershipEvent(chat_id, u, MemberKind(kind), ts, mid))
        elif kind in ("promote", "demote") and u not in BOTS:
            await repo.set_host(HostChange(chat_id, u, ts, kind == "promote", mid))
        elif kind == "post":
            _, _, sender, role, target, question, topic = posts[mid]
            reply = None
            if target is not None:
                t = posts[target]
                reply = ReplyTarget(target, t[1], t[3], t[2])
            post = Post(chat_id, mid, ts, role, sender, is_question=question, thread_id=topic)
            await repo.record_post(post, reply, WINDOW_S)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(log=logs(), batches=st.none() | st.lists(st.integers(1, 12), min_size=1, max_size=4))
async def test_engine_equals_naive_reference(
    repo: Repo, log: Log, batches: list[int] | None
) -> None:
    """Fed one by one or in random batches (Repo.batch), two groups interleaved, storage
    gives the reference's numbers in each: batching changes nothing."""
    chat_ids = [next(_chat_ids), next(_chat_ids)]
    await feed(repo, log, chat_ids, batches)
    for chat_id in chat_ids:
        await check_reports(repo, log, chat_id)


async def check_reports(repo: Repo, log: Log, chat_id: int) -> None:
    zone = str(log.tz)
    config = Config(defaults=GroupSettings(timezone=zone, discussion_window_s=WINDOW_S))
    last_ts = log.events[-1][0] if log.events else log.start
    now = last_ts + timedelta(hours=3)
    for offset in range(4):
        day = log.first_day + timedelta(days=offset)
        report = (await service.digest(repo, config, chat_id, day, now)).report
        cohort = naive_cohort(log, day)
        assert report["joins"] == len(cohort), day
        assert report["leaves"] == naive_leaves(log, day), day
        cells = report["retention"]
        assert isinstance(cells, dict)
        for name, (retained, matured, pending) in naive_retention(log, day, now).items():
            # the report shows day1 for cohort D-1: compare with that cohort
            if name == "day1":
                retained, matured, pending = naive_retention(log, day - timedelta(days=1), now)[
                    "day1"
                ]
            got = cells[name]
            assert (got["retained"], got["matured"], got["pending"]) == (
                retained,
                matured,
                pending,
            ), (day, name)
        active = report["active"]
        assert isinstance(active, dict)
        assert active["audience"] == naive_audience(log, day), day
        response, interaction = naive_active(log, day)
        assert active["response"]["users"] == len(response), day
        assert active["interaction"]["users"] == len(interaction), day
        _, end = day_bounds(log, day)
        members_end = sum(is_member(log, u, min(end, now)) for u in people(log))
        assert report["headcount_end"] == members_end, day
