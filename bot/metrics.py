"""Pure metric definitions (SPEC 3, 4, 9): checkpoints, cohorts, retention, head-count,
audience and active rates. No Telegram, no SQLAlchemy: events in, numbers out.

"State at instant c" is the state after every event strictly before c; an event at exactly
c belongs to what comes after (SPEC 3).
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property, lru_cache
from zoneinfo import ZoneInfo

from bot.events import ActivityMark, HostChange, Level, MemberKind, MembershipEvent

WINDOW_RE = re.compile(r"^(?:(?P<hours>[1-9]\d*)h|day(?P<days>0|[1-9]\d*))$")
MAX_WINDOW_DAYS = 366  # longer is a typo, and would overflow datetimes


@dataclass(frozen=True, slots=True)
class Window:
    name: str
    hours: int | None
    days: int | None


@lru_cache(maxsize=256)
def parse_window(name: str) -> Window:
    """`1h`, `24h`, `Nh` or `day0`, `day1`, `dayN` (up to a year)."""
    text = name.strip().lower()
    m = WINDOW_RE.match(text)
    if m is None:
        raise ValueError(f"window {name!r}: expected Nh (e.g. 1h, 24h) or dayN (e.g. day0, day1)")
    hours = int(m.group("hours")) if m.group("hours") else None
    days = int(m.group("days")) if m.group("days") is not None else None
    if (hours or 0) > MAX_WINDOW_DAYS * 24 or (days or 0) > MAX_WINDOW_DAYS:
        raise ValueError(f"window {name!r}: longer than {MAX_WINDOW_DAYS} days")
    return Window(text, hours, days)


def local_day(ts_utc: datetime, tz: ZoneInfo) -> date:
    return ts_utc.astimezone(tz).date()


@lru_cache(maxsize=8192)
def local_day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of a local day in UTC; DST days last 23 or 25 hours."""
    start = datetime.combine(day, time(0), tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tz).astimezone(UTC)
    return start, end


def checkpoint(join_ts_utc: datetime, window: Window, tz: ZoneInfo) -> datetime:
    if window.hours is not None:
        return join_ts_utc + timedelta(hours=window.hours)
    assert window.days is not None
    return local_day_bounds(local_day(join_ts_utc, tz) + timedelta(days=window.days), tz)[1]


def report_cohort_day(day: date, window: Window) -> date:
    """The cohort a report of day D shows for a window (SPEC 9)."""
    if window.hours is not None:
        return day if window.hours < 24 else day - timedelta(days=math.ceil(window.hours / 24))
    assert window.days is not None
    return day - timedelta(days=window.days)


@dataclass(frozen=True, slots=True)
class RetentionCell:
    retained: int
    matured: int
    pending: int

    @property
    def rate(self) -> float | None:
        return self.retained / self.matured if self.matured else None


@dataclass(frozen=True)
class GroupHistory:
    """One group's people: membership and host events, the baseline, bots, first posts."""

    tz: ZoneInfo
    tracking_start_utc: datetime | None
    baseline_count: int
    membership: Sequence[MembershipEvent]
    host_changes: Sequence[HostChange] = ()
    always_hosts: frozenset[int] = frozenset()
    bots: frozenset[int] = frozenset()
    first_post_utc: Mapping[int, datetime] = field(default_factory=dict)

    @cached_property
    def _people(self) -> _People:
        return _People(self)


def with_baseline(history: GroupHistory, baseline_count: int) -> GroupHistory:
    """The same people with another baseline, sharing the per-person index once built
    (it does not depend on the baseline)."""
    other = replace(history, baseline_count=baseline_count)
    if "_people" in history.__dict__:
        other.__dict__["_people"] = history.__dict__["_people"]
    return other


class _People:
    """Per-user timelines, built once per history."""

    def __init__(self, h: GroupHistory) -> None:
        self.h = h
        events: dict[int, list[MembershipEvent]] = {}
        for e in sorted(h.membership, key=lambda e: (e.ts_utc, e.seq)):
            events.setdefault(e.user_id, []).append(e)
        hosts: dict[int, list[HostChange]] = {}
        for c in sorted(h.host_changes, key=lambda c: (c.ts_utc, c.seq)):
            hosts.setdefault(c.user_id, []).append(c)
        self.events = events
        self.event_ts = {u: [e.ts_utc for e in evs] for u, evs in events.items()}
        self.hosts = hosts
        self.host_ts = {u: [c.ts_utc for c in cs] for u, cs in hosts.items()}
        self.users = set(events) | set(hosts)
        self.cohorts: dict[date, list[tuple[int, datetime]]] = {}
        self.retention_done: dict[tuple[date, str], tuple[RetentionCell, datetime]] = {}
        self.initial_in = {u: self._initially_in(u) for u in self.users}
        self.effective: list[tuple[datetime, int, MemberKind]] = []  # state-changing events
        for u, evs in events.items():
            state = self.initial_in[u]
            for e in evs:
                if (e.kind == MemberKind.JOIN) != state:
                    state = not state
                    self.effective.append((e.ts_utc, u, e.kind))
        self.effective.sort(key=lambda x: x[0])
        self.effective_ts = [x[0] for x in self.effective]
        start = h.tracking_start_utc
        self.initially_member = {
            u
            for u in self.users
            if self.initial_in[u]
            and u not in h.bots
            and not (start is not None and self.host_at(u, start, inclusive=True))
        }
        self._member_changes()

    def _member_changes(self) -> None:
        """Every change of a person's member state as (ts, user, +1/-1), with prefix sums,
        so the head-count at any instant is one bisect (SPEC 4, 9)."""
        changes: list[tuple[datetime, int, int]] = []
        for u in self.users:
            state = u in self.initially_member  # as found at the tracking start
            if not state and (u in self.h.bots or u in self.h.always_hosts):
                continue  # never a member: no change
            if u not in self.host_ts:  # the common case: the state after each instant's
                evs = self.events[u]  # last event, without a search per instant
                for i, e in enumerate(evs):
                    if i + 1 < len(evs) and evs[i + 1].ts_utc == e.ts_utc:
                        continue
                    if (e.kind == MemberKind.JOIN) != state:
                        state = not state
                        changes.append((e.ts_utc, u, 1 if state else -1))
                continue
            for t in sorted(set(self.event_ts.get(u, ())) | set(self.host_ts.get(u, ()))):
                now_member = self.member_at(u, t, inclusive=True)
                if now_member != state:
                    changes.append((t, u, 1 if now_member else -1))
                    state = now_member
        changes.sort(key=lambda x: x[0])
        self.changes = changes
        self.change_ts = [c[0] for c in changes]
        self.prefix = [0]
        for _, _, d in changes:
            self.prefix.append(self.prefix[-1] + d)

    def _initially_in(self, u: int) -> bool:
        """Members before tracking: first seen leaving or posting, or as an admin (SPEC 2)."""
        evs = self.events.get(u)
        if not evs:
            return True  # only host changes: an admin who was in the group
        first_post = self.h.first_post_utc.get(u)
        return evs[0].kind == MemberKind.LEAVE or (
            first_post is not None and first_post < evs[0].ts_utc
        )

    def in_group_at(self, u: int, instant: datetime, inclusive: bool = False) -> bool:
        ts = self.event_ts.get(u)
        if not ts:  # admins found at the start, and people first seen posting, were in
            return u in self.users or u in self.h.first_post_utc
        i = (bisect_right if inclusive else bisect_left)(ts, instant)
        return self.initial_in[u] if i == 0 else self.events[u][i - 1].kind == MemberKind.JOIN

    def host_at(self, u: int, instant: datetime, inclusive: bool = False) -> bool:
        if u in self.h.always_hosts:
            return True
        ts = self.host_ts.get(u)
        if not ts:
            return False
        i = (bisect_right if inclusive else bisect_left)(ts, instant)
        return i > 0 and self.hosts[u][i - 1].is_host

    def member_at(self, u: int, instant: datetime, inclusive: bool = False) -> bool:
        return (
            u not in self.h.bots
            and self.in_group_at(u, instant, inclusive)
            and not self.host_at(u, instant, inclusive)
        )

    def effective_between(
        self, lo: datetime, hi: datetime
    ) -> list[tuple[datetime, int, MemberKind]]:
        return self.effective[
            bisect_left(self.effective_ts, lo) : bisect_left(self.effective_ts, hi)
        ]


def _tracking_day(h: GroupHistory) -> date | None:
    return None if h.tracking_start_utc is None else local_day(h.tracking_start_utc, h.tz)


def cohort(history: GroupHistory, day: date) -> list[tuple[int, datetime]]:
    """Members whose membership interval starts on local day D, first join of D each."""
    p = history._people
    if day in p.cohorts:
        return p.cohorts[day]
    lo, hi = local_day_bounds(day, history.tz)
    first: dict[int, datetime] = {}
    for ts, u, kind in p.effective_between(lo, hi):
        if (
            kind == MemberKind.JOIN
            and u not in first
            and u not in history.bots
            and not p.host_at(u, ts, inclusive=True)
        ):
            first[u] = ts
    p.cohorts[day] = sorted(first.items(), key=lambda x: (x[1], x[0]))
    return p.cohorts[day]


def retention(history: GroupHistory, day: date, window: Window, now: datetime) -> RetentionCell:
    p = history._people
    done = p.retention_done.get((day, window.name))
    if done is not None and now >= done[1]:
        return done[0]
    retained = matured = pending = 0
    members = cohort(history, day)
    # dayN checkpoints are the same for the whole cohort: one zoneinfo computation
    fixed = (
        checkpoint(members[0][1], window, history.tz)
        if members and window.days is not None
        else None
    )
    last = None  # the latest checkpoint passed
    for user, ts in members:
        c = fixed or checkpoint(ts, window, history.tz)
        if c > now:
            pending += 1
            continue
        matured += 1
        retained += p.in_group_at(user, c)  # promoted to admin still counts as retained
        if last is None or c > last:
            last = c
    cell = RetentionCell(retained, matured, pending)
    if last is not None and not pending:  # fully matured: final for any later `now`
        p.retention_done[(day, window.name)] = (cell, last)
    return cell


def pooled(cells: Iterable[RetentionCell]) -> RetentionCell:
    """Σ retained / Σ matured over a range of cohorts (SPEC 3)."""
    cells = list(cells)
    return RetentionCell(
        sum(c.retained for c in cells),
        sum(c.matured for c in cells),
        sum(c.pending for c in cells),
    )


def in_group_at(history: GroupHistory, user_id: int, instant: datetime) -> bool:
    return history._people.in_group_at(user_id, instant)


def headcount_at(history: GroupHistory, instant: datetime) -> int | None:
    """Baseline plus the tracked people's changes since tracking began (SPEC 4, 9)."""
    first = _tracking_day(history)
    if first is None or instant < local_day_bounds(first, history.tz)[0]:
        return None
    assert history.tracking_start_utc is not None
    if instant <= history.tracking_start_utc:
        return history.baseline_count  # as found at the start, from the start of that day
    p = history._people
    return history.baseline_count + p.prefix[bisect_left(p.change_ts, instant)]


def headcount_end(history: GroupHistory, day: date, now: datetime) -> int | None:
    """Members at the end of D, or now while D is not over (SPEC 9)."""
    return headcount_at(history, min(local_day_bounds(day, history.tz)[1], now))


def audience(history: GroupHistory, day: date) -> int | None:
    """Members at the start of D plus members who became members during D (SPEC 4)."""
    first = _tracking_day(history)
    if first is None or day < first:
        return None
    return audience_between(history, day, day)


def audience_between(history: GroupHistory, first_day: date, last_day: date) -> int | None:
    """Distinct members present at any moment of local days A..B, counted from the tracking
    day on (the baseline included); None when the days end before tracking (SPEC 4, 12)."""
    first = _tracking_day(history)
    if first is None or last_day < first:
        return None
    lo = local_day_bounds(max(first_day, first), history.tz)[0]
    hi = local_day_bounds(last_day, history.tz)[1]
    start_count = headcount_at(history, lo)
    assert start_count is not None
    p = history._people
    first_change: dict[int, int] = {}
    for _, u, d in p.changes[bisect_left(p.change_ts, lo) : bisect_left(p.change_ts, hi)]:
        first_change.setdefault(u, d)
    # whoever's first change in the days makes them a member was not one at their start
    return start_count + sum(1 for d in first_change.values() if d > 0)


def member_at(history: GroupHistory, user_id: int, instant: datetime) -> bool:
    """In the group, not a host, not a bot, in the state just before `instant`."""
    return history._people.member_at(user_id, instant)


def inviter_was_member(history: GroupHistory, user_id: int, instant: datetime) -> bool:
    """A member just before `instant`; someone never seen joining or leaving was in the group
    (only people in the group can add someone) unless a bot or a host then (SPEC 12)."""
    p = history._people
    if user_id in history.bots or p.host_at(user_id, instant):
        return False
    return not p.event_ts.get(user_id) or p.in_group_at(user_id, instant)


def joins_on(history: GroupHistory, day: date) -> int:
    return len(cohort(history, day))


def leaves_on(history: GroupHistory, day: date) -> int:
    """Leave events of members on D; an admin leaving is not a member leaving."""
    p = history._people
    lo, hi = local_day_bounds(day, history.tz)
    return sum(
        1
        for ts, u, kind in p.effective_between(lo, hi)
        if kind == MemberKind.LEAVE and u not in history.bots and not p.host_at(u, ts)
    )


def active_users(marks: Iterable[ActivityMark], day: date, tz: ZoneInfo, level: Level) -> int:
    lo, hi = local_day_bounds(day, tz)
    return len({m.user_id for m in marks if m.level == level and lo <= m.ts_utc < hi})


def active_rate(users: int, audience: int | None) -> float | None:
    return users / audience if audience else None


def mean_rate(rates: Iterable[float | None]) -> float | None:
    """The playbook's "average from day A to B": mean of daily rates, days without one left out."""
    known = [r for r in rates if r is not None]
    return sum(known) / len(known) if known else None


# ---- daily rollups (a cache of `day_numbers`, kept by storage/rollups.py) -----------------

DEFAULT_WINDOWS = ("1h", "day0", "day1")  # always in a rollup row (the daily_metrics view)


@dataclass(frozen=True, slots=True)
class DayNumbers:
    """Every number of one group's local day D that a report reads (SPEC 3, 4, 8, 9)."""

    day: date
    joins: int
    leaves: int
    headcount_end: int | None
    audience: int | None
    response_users: int
    interaction_users: int
    cells: Mapping[str, RetentionCell]  # cohort D at each window


def rollup_windows(windows: Iterable[str]) -> tuple[str, ...]:
    """The windows a rollup row holds: the configured ones and the defaults, sorted."""
    return tuple(sorted({*windows, *DEFAULT_WINDOWS}))


def day_numbers(
    history: GroupHistory,
    day: date,
    windows: Iterable[str],
    now: datetime,
    active: Mapping[tuple[date, str], int],
) -> DayNumbers:
    return DayNumbers(
        day,
        joins_on(history, day),
        leaves_on(history, day),
        headcount_end(history, day, now),
        audience(history, day),
        active.get((day, str(Level.RESPONSE)), 0),
        active.get((day, str(Level.INTERACTION)), 0),
        {w: retention(history, day, parse_window(w), now) for w in windows},
    )


def day_final_at(day: date, tz: ZoneInfo, windows: Iterable[str]) -> datetime:
    """When no number of day D can change any more without a late event: the day is over
    and every checkpoint of its cohort is past. A rollup row serves D only from then."""
    end = local_day_bounds(day, tz)[1]
    last = end
    for name in windows:
        w = parse_window(name)
        if w.hours is not None:
            last = max(last, end + timedelta(hours=w.hours))
        else:
            assert w.days is not None
            last = max(last, local_day_bounds(day + timedelta(days=w.days), tz)[1])
    return last


def day_keepable_at(day: date, tz: ZoneInfo, windows: Iterable[str]) -> datetime:
    """When a rollup row of day D can be kept: the day is over and so is every hour-window
    checkpoint of its cohort. A dayN cell is then either final or wholly pending (one
    checkpoint for the whole cohort, the end of D+N), and a row keeps it as such."""
    end = local_day_bounds(day, tz)[1]
    hours = [parse_window(name).hours or 0 for name in windows]
    return end + timedelta(hours=max([0, *hours]))


def day_checkpoint(day: date, window: Window, tz: ZoneInfo) -> datetime:
    """The one checkpoint of cohort D at a dayN window: the end of D+N."""
    assert window.days is not None
    return local_day_bounds(day + timedelta(days=window.days), tz)[1]


def serves_at(numbers: DayNumbers, tz: ZoneInfo, windows: Iterable[str], now: datetime) -> bool:
    """Whether a kept row gives day D's numbers at `now`: D and its hour-window checkpoints
    are over by then, and each dayN cell is final with its checkpoint past, or wholly
    pending with it still ahead (or empty: the same at any time)."""
    if day_keepable_at(numbers.day, tz, windows) > now:
        return False
    for name, c in numbers.cells.items():
        w = parse_window(name)
        if w.days is None:
            continue
        ahead = day_checkpoint(numbers.day, w, tz) > now
        if (c.pending and not ahead) or (c.matured and ahead):
            return False
    return True


def finishable(kept: DayNumbers, tz: ZoneInfo, now: datetime) -> bool:
    """Whether a kept row that no longer serves at `now` is stale only in wholly pending
    cells whose checkpoint has passed (the rest of the row is final): then `finish`
    computes those, not the whole day."""
    if day_keepable_at(kept.day, tz, kept.cells) > now:
        return False
    for name, c in kept.cells.items():
        w = parse_window(name)
        if w.days is not None and c.matured and day_checkpoint(kept.day, w, tz) > now:
            return False
    return True


def finish(history: GroupHistory, kept: DayNumbers, now: datetime) -> DayNumbers:
    """A `finishable` kept row at `now`, its passed pending cells computed from a history
    that holds the day's cohort."""
    cells = dict(kept.cells)
    for name, c in kept.cells.items():
        w = parse_window(name)
        if c.pending and w.days is not None and day_checkpoint(kept.day, w, history.tz) <= now:
            cells[name] = retention(history, kept.day, w, now)
    return replace(kept, cells=cells)


def row_horizon(numbers: DayNumbers, tz: ZoneInfo, windows: Iterable[str]) -> datetime:
    """The instant from which no event can change a kept row: the numbers it holds read
    only the state before it (its wholly pending cells hold no state)."""
    last = day_keepable_at(numbers.day, tz, windows)
    for name, c in numbers.cells.items():
        w = parse_window(name)
        if w.days is not None and not c.pending:
            last = max(last, day_checkpoint(numbers.day, w, tz))
    return last
