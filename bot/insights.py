"""Growth numbers (SPEC 12): where newcomers come from, who brings them, the newcomer
funnel, the best hours and quiet newcomers. Pure: history, activity marks and message
counts in, numbers out; no Telegram, no SQLAlchemy.

Everything counts cohort entries (SPEC 3: a member's first join of a local day), with the
source and inviter of that join.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from bot import metrics
from bot.events import ActivityMark, Level, MemberKind

DIRECT = "direct"  # a join with nothing recorded about how (also rows stored before sources)
FUNNEL_STEPS = ("joined", "stayed_1h", "stayed_day1", "responded", "interacted", "referred")
HOUR_1, DAY_1 = metrics.parse_window("1h"), metrics.parse_window("day1")
REPLY_WITHIN_S = 86_400  # responders to a host post: 0 <= Δt <= 24 h


@dataclass(frozen=True, slots=True)
class Entry:
    """A cohort entry: a member's first join of local day `day`, how and through whom."""

    user_id: int
    ts_utc: datetime
    seq: int
    day: date
    source: str
    inviter_id: int | None
    referral: bool  # the inviter was a member just before the join


def entries(history: metrics.GroupHistory, first_day: date, last_day: date) -> list[Entry]:
    """Cohort entries of local days A..B, in join order."""
    joins = {(e.user_id, e.ts_utc): e for e in history.membership if e.kind == MemberKind.JOIN}
    out = []
    day = first_day
    while day <= last_day:
        for user, ts in metrics.cohort(history, day):
            ev = joins[(user, ts)]
            inviter = ev.inviter_id
            out.append(
                Entry(
                    user,
                    ts,
                    ev.seq,
                    day,
                    ev.join_source or DIRECT,
                    inviter,
                    inviter is not None and metrics.inviter_was_member(history, inviter, ts),
                )
            )
        day += timedelta(days=1)
    out.sort(key=lambda e: (e.ts_utc, e.seq))
    return out


@cache
def activation_end(day: date, activation_days: int, tz: ZoneInfo) -> datetime:
    """The activation window of cohort day D ends at the start of D + activation_days."""
    return metrics.local_day_bounds(day + timedelta(days=activation_days), tz)[0]


@cache
def _day_checkpoint(day: date, window: metrics.Window, tz: ZoneInfo) -> datetime:
    """A dayN checkpoint is the same for the whole cohort day."""
    return metrics.local_day_bounds(day + timedelta(days=window.days or 0), tz)[1]


def checkpoint(e: Entry, window: metrics.Window, tz: ZoneInfo) -> datetime:
    if window.days is not None:
        return _day_checkpoint(e.day, window, tz)
    return metrics.checkpoint(e.ts_utc, window, tz)


class Marks:
    """A person's activity marks, by level, in time order."""

    def __init__(self, marks: Iterable[ActivityMark]) -> None:
        self.by_user: dict[tuple[int, Level], list[datetime]] = {}
        for m in marks:
            self.by_user.setdefault((m.user_id, m.level), []).append(m.ts_utc)
        for times in self.by_user.values():
            times.sort()

    def any_between(
        self, user: int, levels: Iterable[Level], lo: datetime, hi: datetime | None
    ) -> bool:
        """A mark of one of the levels at lo <= ts < hi (hi None: no end)."""
        for level in levels:
            for ts in self.by_user.get((user, level), ()):
                if ts >= lo and (hi is None or ts < hi):
                    return True
        return False


Cell = metrics.RetentionCell  # `retained` counts the users who passed: stayed, activated


def cell_dict(cell: Cell, users_key: str) -> dict[str, object]:
    return {
        users_key: cell.retained,
        "matured": cell.matured,
        "pending": cell.pending,
        "rate": cell.rate,
    }


def retention_cell(
    history: metrics.GroupHistory, group: Sequence[Entry], window: metrics.Window, now: datetime
) -> Cell:
    """Pooled retention of some cohort entries at one window (SPEC 3)."""
    retained = matured = 0
    for e in group:
        c = checkpoint(e, window, history.tz)
        if c <= now:
            matured += 1
            retained += metrics.in_group_at(history, e.user_id, c)
    return Cell(retained, matured, len(group) - matured)


def activated(e: Entry, marks: Marks, end: datetime) -> bool:
    """Made response-level active by an own message from the join to the window's end."""
    return marks.any_between(e.user_id, (Level.RESPONSE,), e.ts_utc, end)


def activated_cell(
    group: Sequence[Entry], marks: Marks, activation_days: int, tz: ZoneInfo, now: datetime
) -> Cell:
    users = matured = 0
    for e in group:
        end = activation_end(e.day, activation_days, tz)
        if end <= now:
            matured += 1
            users += activated(e, marks, end)
    return Cell(users, matured, len(group) - matured)


def by_source(
    history: metrics.GroupHistory,
    cohort: Sequence[Entry],
    windows: Sequence[str],
    marks: Marks,
    activation_days: int,
    now: datetime,
) -> list[dict[str, object]]:
    """One row per source with a cohort entry: most joins first, ties by source key."""
    groups: dict[str, list[Entry]] = {}
    for e in cohort:
        groups.setdefault(e.source, []).append(e)
    rows: list[dict[str, object]] = []
    for source, group in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        retention = {
            name: cell_dict(
                retention_cell(history, group, metrics.parse_window(name), now), "retained"
            )
            for name in windows
        }
        act = activated_cell(group, marks, activation_days, history.tz, now)
        rows.append(
            {
                "source": source,
                "joins": len(group),
                "retention": retention,
                "activated": cell_dict(act, "users"),
            }
        )
    return rows


def referral(
    history: metrics.GroupHistory, cohort: Sequence[Entry], first_day: date, last_day: date
) -> dict[str, object]:
    """Referred cohort entries, their distinct inviters, and the members present (SPEC 12)."""
    referred = [e for e in cohort if e.referral]
    referrers = len({e.inviter_id for e in referred})
    audience = metrics.audience_between(history, first_day, last_day) or 0
    return {
        "referred_joins": len(referred),
        "referrers": referrers,
        "audience": audience,
        "rate": referrers / audience if audience else None,
    }


def funnel(
    history: metrics.GroupHistory,
    cohort: Sequence[Entry],
    referrals_by: Mapping[int, Sequence[datetime]],
    marks: Marks,
    activation_days: int,
    now: datetime,
) -> dict[str, object]:
    """The nested funnel of the entries whose window, 1h and day1 checkpoints have passed.

    `referrals_by`: inviter -> times of the referral joins they brought (any day)."""
    tz = history.tz
    counts = dict.fromkeys(FUNNEL_STEPS, 0)
    pending = 0
    for e in cohort:
        end = activation_end(e.day, activation_days, tz)
        at_1h = checkpoint(e, HOUR_1, tz)
        at_day1 = checkpoint(e, DAY_1, tz)
        if max(end, at_1h, at_day1) > now:
            pending += 1
            continue
        passed = (
            True,
            metrics.in_group_at(history, e.user_id, at_1h),
            metrics.in_group_at(history, e.user_id, at_day1),
            activated(e, marks, end),
            marks.any_between(e.user_id, (Level.INTERACTION,), e.ts_utc, end),
            any(e.ts_utc <= t < end for t in referrals_by.get(e.user_id, ())),
        )
        for step, ok in zip(FUNNEL_STEPS, passed, strict=True):
            if not ok:
                break
            counts[step] += 1
    joined = counts["joined"]
    return {
        "pending": pending,
        "steps": [
            {"step": step, "users": n, "share": n / joined if joined else None}
            for step, n in counts.items()
        ],
    }


def referrals_by_inviter(cohort: Iterable[Entry]) -> dict[int, list[datetime]]:
    out: dict[int, list[datetime]] = {}
    for e in cohort:
        if e.referral and e.inviter_id is not None:
            out.setdefault(e.inviter_id, []).append(e.ts_utc)
    return out


def hours(
    tz: ZoneInfo,
    member_messages: Iterable[tuple[datetime, int]],
    host_posts: Iterable[tuple[datetime, int]],
) -> dict[str, list[list[int]] | list[list[float | None]]]:
    """Weekday (0 = Monday) x local hour: member messages, and the mean of distinct member
    responders per host post (None where there was no host post).

    `member_messages`: (time, count) pairs, a count may stand for a bucket starting then that
    lies within one local hour; `host_posts`: (time, distinct members who replied)."""
    messages = [[0] * 24 for _ in range(7)]
    for ts, n in member_messages:
        local = ts.astimezone(tz)
        messages[local.weekday()][local.hour] += n
    posts = [[0] * 24 for _ in range(7)]
    responders = [[0] * 24 for _ in range(7)]
    for ts, n in host_posts:
        local = ts.astimezone(tz)
        posts[local.weekday()][local.hour] += 1
        responders[local.weekday()][local.hour] += n
    means: list[list[float | None]] = [
        [r / p if p else None for r, p in zip(rrow, prow, strict=True)]
        for rrow, prow in zip(responders, posts, strict=True)
    ]
    return {"messages": messages, "responders_per_host_post": means}


@dataclass(frozen=True, slots=True)
class QuietNewcomer:
    user_id: int
    joined_utc: datetime


def quiet_newcomers(
    history: metrics.GroupHistory, cohort: Sequence[Entry], marks: Marks, now: datetime
) -> list[QuietNewcomer]:
    """Members of their latest cohort entry in A..B who are members now and whose own
    messages since that join made them active at neither level; oldest join first."""
    latest: dict[int, Entry] = {}
    for e in cohort:  # in join order: the last one wins
        latest[e.user_id] = e
    quiet = [
        e
        for e in latest.values()
        if metrics.member_at(history, e.user_id, now)
        and not marks.any_between(e.user_id, tuple(Level), e.ts_utc, None)
    ]
    quiet.sort(key=lambda e: (e.ts_utc, e.seq))
    return [QuietNewcomer(e.user_id, e.ts_utc) for e in quiet]


DAY_0 = metrics.parse_window("day0")


def top_source(
    history: metrics.GroupHistory, day: date, now: datetime
) -> dict[str, object] | None:
    """The source with the most cohort entries of local day D (ties by source key), with
    their pooled day-0 retention; None when nobody joined that day (the digest's line)."""
    return top_sources(history, [day], now)[day]


def top_sources(
    history: metrics.GroupHistory, days: Sequence[date], now: datetime
) -> dict[date, dict[str, object] | None]:
    """`top_source` of each of these days (their entries read in one pass)."""
    if not days:
        return {}
    by_day: dict[date, dict[str, list[Entry]]] = {}
    for e in entries(history, min(days), max(days)):
        by_day.setdefault(e.day, {}).setdefault(e.source, []).append(e)
    out: dict[date, dict[str, object] | None] = {}
    for day in days:
        groups = by_day.get(day)
        if not groups:
            out[day] = None
            continue
        source, group = min(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        out[day] = {
            "source": source,
            "joins": len(group),
            "day0": cell_dict(retention_cell(history, group, DAY_0, now), "retained"),
        }
    return out
