"""One call per question the product answers: fetch what is needed, hand it to the metrics.

`day_report` returns the structure `opsbot report --json` prints (SPEC 8); the digest, the
commands and the CLI all use it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from bot import insights, metrics
from bot.config import (
    Config,
    ConfigError,
    GroupSettings,
    Target,
    parse_clock,
    parse_digest_to,
    parse_language,
    parse_timezone,
)
from bot.events import Level
from bot.targets import ACTIVE_METRICS, RANGED_METRICS, metric_window, parse_metric, parse_range
from storage.chats import ChatInfo
from storage.people import HistoryRows
from storage.repo import Repo
from storage.rollups import KeptDay, Span, TopSource

log = logging.getLogger(__name__)


# what /settings stores, read back through the same checks as the config file's values
STORED_SETTINGS: dict[str, Callable[[Any, str], Any]] = {
    "timezone": parse_timezone,
    "language": parse_language,
    "digest_time": parse_clock,
    "digest_to": parse_digest_to,
}
_skipped: set[tuple[int, str, str]] = set()  # stored values already logged as skipped


def skip_stored(chat_id: int, what: str, raw: object) -> None:
    """A stored value that no longer parses (stored before today's bounds, or edited by
    hand) is left out, with one log line per value and process, never the value itself."""
    key = (chat_id, what, repr(raw)[:200])
    if key in _skipped:
        return
    if len(_skipped) > 10_000:
        _skipped.clear()
    _skipped.add(key)
    log.warning("chat %s: stored %s does not parse; left out", chat_id, what)


async def group_settings(repo: Repo, config: Config, chat_id: int) -> GroupSettings:
    """Config file settings for the group, overridden by what was changed in chat."""
    return settings_for(config, chat_id, await repo.chat(chat_id))


async def settings_of(
    repo: Repo, config: Config, chat_ids: Sequence[int]
) -> dict[int, GroupSettings]:
    """`group_settings` of several groups, read at once."""
    infos = await repo.chats(chat_ids)
    return {c: settings_for(config, c, infos.get(c)) for c in chat_ids}


def settings_for(config: Config, chat_id: int, info: ChatInfo | None) -> GroupSettings:
    """`group_settings` from the group's row, already read."""
    base = config.for_chat(chat_id)
    if info is None:
        return base
    changes: dict[str, Any] = {}
    for column, parse in STORED_SETTINGS.items():
        raw = getattr(info, column)
        if not raw:
            continue
        try:
            changes[column] = parse(raw, column)
        except ConfigError:
            skip_stored(chat_id, f"setting {column}", raw)
    return replace(base, **changes)


def stored_target(metric: str, value: float | None, rng: str | None) -> Target | None:
    """A /settarget row as a target (None: switched off); ValueError if it does not parse."""
    canonical = parse_metric(metric)
    if value is None:
        return None
    if not 0 <= value <= 1:  # NaN too
        raise ValueError("value")
    if canonical not in RANGED_METRICS:
        return Target(canonical, value, None)
    return Target(canonical, value, parse_range(rng) if rng is not None else "last 7")


async def targets_in_force(repo: Repo, settings: GroupSettings, chat_id: int) -> list[Target]:
    """Config targets, overridden (or switched off) by /settarget (SPEC 5)."""
    return _targets(chat_id, settings, await repo.chat_targets(chat_id))


async def targets_of(repo: Repo, settings: dict[int, GroupSettings]) -> dict[int, list[Target]]:
    """`targets_in_force` of several groups, read at once."""
    stored = await repo.chat_targets_of(list(settings))
    return {c: _targets(c, s, stored[c]) for c, s in settings.items()}


def _targets(
    chat_id: int, settings: GroupSettings, stored: dict[str, tuple[float | None, str | None]]
) -> list[Target]:
    by_metric = {t.metric: t for t in settings.targets}
    for metric, (value, rng) in stored.items():
        try:
            target = stored_target(metric, value, rng)
        except (ValueError, TypeError):
            skip_stored(chat_id, "target", (metric, value, rng))
            continue
        if target is None:
            by_metric.pop(parse_metric(metric), None)
        else:
            by_metric[target.metric] = target
    return list(by_metric.values())


@dataclass(frozen=True, slots=True)
class GroupData:
    """Everything the metrics read for one group, loaded once per report."""

    chat_id: int
    settings: GroupSettings
    history: metrics.GroupHistory
    active_counts: dict[tuple[date, str], int]  # (local day, level) -> distinct active users
    # every number of each day loaded: from the daily rollups where final, else from raw rows
    days: dict[date, metrics.DayNumbers] = field(default_factory=dict)
    complete: bool = True  # history holds everyone (else: only what `days` needed)
    top_sources: dict[date, dict[str, object] | None] = field(default_factory=dict)  # kept

    @property
    def tz(self) -> ZoneInfo:
        return self.settings.tz


class Ask(NamedTuple):
    """What one group's read needs (`load_group` says what each field does)."""

    chat_id: int
    first_day: date
    last_day: date
    settings: GroupSettings
    active: bool = True
    days_only: bool = False
    people_from: date | None = None


async def load_group(
    repo: Repo,
    config: Config,
    chat_id: int,
    first_day: date,
    last_day: date,
    *,
    now: datetime | None = None,
    active: bool = True,
    days_only: bool = False,
    people_from: date | None = None,
    settings: GroupSettings | None = None,
) -> GroupData:
    """The group's numbers of [first_day, last_day] as of `now`: the one place reports,
    digests, alerts, /trend and exports read them. Kept days come from the daily rollups
    (recomputed from raw rows where a write can have changed them, then kept); days not
    kept yet, and rows whose pending checkpoint has passed, are computed from raw rows.
    All in one transaction: what is kept is what the rows said.

    `days_only`: the caller reads nothing but these days' numbers (`data.days`, `cell` and
    `numbers_on` of them, at the rollup windows), and the people of `people_from` on: then
    only the people with events since the first day computed (or `people_from`) are read,
    not the whole history. Without `now`: the whole history and the days' activity only.
    `settings`: the group's, when the caller has read them already. `active=False`: the
    caller reads no activity (the days' active users are then read only for the days kept)."""
    if settings is None:
        settings = await group_settings(repo, config, chat_id)
    if now is None:
        await repo.write_marks()  # what this task's batch wrote so far counts
        return await _whole_history(repo, chat_id, settings, first_day, last_day, active)
    ask = Ask(chat_id, first_day, last_day, settings, active, days_only, people_from)
    return (await load_groups(repo, [ask], now))[chat_id]


async def load_groups(repo: Repo, asks: Sequence[Ask], now: datetime) -> dict[int, GroupData]:
    """`load_group` of several groups at once (a digest round): each statement reads every
    group's rows (kept days, recent people, activity), so the cost per group is the
    metrics', not a dozen round trips."""
    await repo.write_marks()  # what this task's batch wrote so far counts
    out: dict[int, GroupData] = {}
    async with repo.batch():
        spans = {}
        for a in asks:
            # the kept days asked for, the day before (the head-count at their start), and
            # the days up to `people_from` (the head-count at its start)
            last = a.last_day
            if a.people_from is not None:
                last = max(last, a.people_from - timedelta(days=1))
            spans[a.chat_id] = Span(a.first_day - timedelta(days=1), last, rollups_key(a.settings))
        kept = await repo.kept_days(spans)
        plans = {a.chat_id: _Plan(a, kept.get(a.chat_id), now) for a in asks}
        recent = await repo.recent_histories(
            {c: p.recent_from for c, p in plans.items() if p.recent_from is not None}
        )
        histories = {c: await _plan_history(repo, p, recent.get(c)) for c, p in plans.items()}
        by_day = await _active_by_day(repo, plans)
        keep = []
        for c, p in plans.items():
            history = histories[c]
            for d in p.todo:
                old = p.finishing.get(d)
                p.computed[d] = (
                    metrics.finish(history, old.numbers, now)
                    if old is not None
                    else metrics.day_numbers(history, d, p.windows, now, by_day[c])
                )
            # a day's top source is final once it is over: a row kept before, as kept
            p.tops = {d: p.finishing[d].top_source for d in p.keep if d in p.finishing}
            p.tops.update(
                insights.top_sources(history, [d for d in p.keep if d not in p.tops], now)
            )
            tz, key = p.ask.settings.tz, spans[c].key
            keep += [
                (
                    c,
                    key,
                    KeptDay(
                        p.computed[d],
                        p.tops[d],
                        metrics.row_horizon(p.computed[d], tz, p.windows),
                        metrics.day_final_at(d, tz, p.windows) <= now,
                    ),
                )
                for d in p.keep
            ]
        await repo.keep_rollups(keep, now)
    for c, p in plans.items():
        counts = by_day[c]
        for d, k in [*p.served.items(), *p.finishing.items()]:
            counts[(d, str(Level.RESPONSE))] = k.numbers.response_users
            counts[(d, str(Level.INTERACTION))] = k.numbers.interaction_users
        out[c] = GroupData(
            c,
            p.ask.settings,
            histories[c],
            counts if p.ask.active else {},
            {**{d: k.numbers for d, k in p.served.items()}, **p.computed},
            p.complete,
            {**{d: k.top_source for d, k in p.served.items()}, **p.tops},
        )
    return out


class _Plan:
    """One group's read in `load_groups`: which kept rows serve, which days are computed
    (and kept), and whose events that needs."""

    def __init__(self, ask: Ask, kept: dict[date, KeptDay] | None, now: datetime) -> None:
        self.ask = ask
        tz = ask.settings.tz
        self.windows = metrics.rollup_windows(ask.settings.windows)
        self.served = {
            d: k
            for d, k in (kept or {}).items()
            if metrics.serves_at(k.numbers, tz, self.windows, now)
        }
        span = (ask.last_day - ask.first_day).days + 1
        days = [ask.first_day + timedelta(days=i) for i in range(span)]
        self.todo = [d for d in days if d not in self.served]
        # kept rows whose only stale cells are pending ones now past their checkpoint
        self.finishing = {
            d: k
            for d, k in (kept or {}).items()
            if d in self.todo and metrics.finishable(k.numbers, tz, now)
        }
        # the days computed now that can be kept (none for a group with no row)
        self.keep = (
            []
            if kept is None
            else [d for d in self.todo if metrics.day_keepable_at(d, tz, self.windows) <= now]
        )
        self.recent_from: datetime | None = None  # read only the people with events since
        self.baseline: int | None = None  # the head-count then, kept
        self.nobody = False  # no one's events are needed
        starts = [*self.todo[:1], *([ask.people_from] if ask.people_from is not None else [])]
        if ask.days_only and not starts:
            self.nobody = True
        elif ask.days_only:
            first = min(starts)
            before = self.served.get(first - timedelta(days=1))
            start = metrics.local_day_bounds(first, tz)[0]
            if before is not None and before.numbers.headcount_end is not None and now >= start:
                self.recent_from, self.baseline = start, before.numbers.headcount_end
        self.complete = False  # the history holds everyone
        self.computed: dict[date, metrics.DayNumbers] = {}
        self.tops: dict[date, TopSource] = {}  # the days kept now: their top source

    def activity_days(self) -> list[date]:
        """The days whose active users are read: those computed, or at least those kept
        (a row finished holds them)."""
        days = self.todo if self.ask.active else self.keep
        return [d for d in days if d not in self.finishing]


async def _plan_history(
    repo: Repo, plan: _Plan, recent: HistoryRows | None
) -> metrics.GroupHistory:
    settings = plan.ask.settings
    if plan.nobody:
        return metrics.GroupHistory(settings.tz, None, 0, ())
    if recent is not None and plan.recent_from is not None:
        # the people with events from `recent_from` on, with a baseline that makes the
        # head-count at that instant the kept one (nobody else changes from then on)
        start = recent.tracking_start_utc
        if start is not None and start < plan.recent_from:
            history = group_history(replace(recent, baseline_count=0), settings)
            own = metrics.headcount_at(history, plan.recent_from)
            assert own is not None
            assert plan.baseline is not None
            return metrics.with_baseline(history, plan.baseline - own)
    plan.complete = True
    return await _history(repo, plan.ask.chat_id, settings)


async def _whole_history(
    repo: Repo, chat_id: int, settings: GroupSettings, first: date, last: date, active: bool
) -> GroupData:
    history = await _history(repo, chat_id, settings)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    by_day = (
        await repo.active_user_counts(
            chat_id, [metrics.local_day_bounds(d, settings.tz) for d in days]
        )
        if active and days
        else {}
    )
    counts = {(days[i], level): n for (i, level), n in by_day.items()}
    return GroupData(chat_id, settings, history, counts)


async def _active_by_day(
    repo: Repo, plans: dict[int, _Plan]
) -> dict[int, dict[tuple[date, str], int]]:
    """Per group, (local day, level) -> distinct active users of its activity days."""
    days = {c: p.activity_days() for c, p in plans.items()}
    counts = await repo.active_user_counts_of(
        {
            c: [metrics.local_day_bounds(d, plans[c].ask.settings.tz) for d in ds]
            for c, ds in days.items()
        }
    )
    return {c: {(days[c][i], level): n for (i, level), n in counts[c].items()} for c in plans}


def rollups_key(settings: GroupSettings) -> tuple[str, str, str]:
    """What a rollup row was computed with: timezone, windows, config-file hosts."""
    hosts = ",".join(str(h) for h in sorted(settings.hosts))
    return settings.timezone, ",".join(metrics.rollup_windows(settings.windows)), hosts


def cell(data: GroupData, day: date, window: str, now: datetime) -> metrics.RetentionCell:
    """Cohort D at a window: from the day's numbers when loaded, else from the history."""
    n = data.days.get(day)
    if n is not None and window in n.cells:
        return n.cells[window]
    assert data.complete, "load_group(days_only=True) for a day or window it did not load"
    return metrics.retention(data.history, day, metrics.parse_window(window), now)


def numbers_on(data: GroupData, day: date, now: datetime) -> metrics.DayNumbers:
    n = data.days.get(day)
    if n is None:
        assert data.complete, "load_group(days_only=True) for a day it did not load"
        windows = metrics.rollup_windows(data.settings.windows)
        n = metrics.day_numbers(data.history, day, windows, now, data.active_counts)
    return n


def top_source(data: GroupData, day: date, now: datetime) -> dict[str, object] | None:
    """The digest's top source of day D: as kept, else from the history."""
    if day in data.top_sources:
        return data.top_sources[day]
    return insights.top_source(data.history, day, now)


MEMO_SIZE = 64  # groups whose derived history a process keeps


async def _history(repo: Repo, chat_id: int, settings: GroupSettings) -> metrics.GroupHistory:
    """The group's history for the metrics, reused while its data version is unchanged
    (its lazily built per-person index is the expensive part on big groups)."""
    info = await repo.chat(chat_id)
    version = info.data_version if info else -1
    key = ("history", chat_id, version, settings.timezone, settings.hosts)
    cached: metrics.GroupHistory | None = repo.memo.get(key)
    if cached is not None:
        repo.memo.move_to_end(key)
        return cached
    history = group_history(await repo.history(chat_id), settings)
    repo.memo[key] = history
    while len(repo.memo) > MEMO_SIZE:
        repo.memo.popitem(last=False)
    return history


def group_history(rows: HistoryRows, settings: GroupSettings) -> metrics.GroupHistory:
    """The metrics' view of a group's stored people under its settings."""
    return metrics.GroupHistory(
        tz=settings.tz,
        tracking_start_utc=rows.tracking_start_utc,
        baseline_count=rows.baseline_count,
        membership=rows.membership,
        host_changes=rows.host_changes,
        always_hosts=frozenset(settings.hosts | rows.manual_hosts),
        bots=rows.bots,
        first_post_utc=rows.first_post_utc,
    )


def active_rate_on(
    data: GroupData, day: date, level: Level
) -> tuple[int, int | None, float | None]:
    """(active users, audience, rate) of one local day."""
    n = data.days.get(day)
    assert n is not None or data.complete, "load_group(days_only=True) for a day it did not load"
    users = data.active_counts.get((day, str(level)), 0)
    audience = n.audience if n is not None else metrics.audience(data.history, day)
    return users, audience, metrics.active_rate(users, audience)


def range_days(rng: str | None, day: date, campaign_start: str | None) -> list[date] | None:
    """The days a target's range covers, ending no later than `day`; None if undefined."""
    if rng is None or rng.startswith("last "):
        n = int(rng.split()[1]) if rng else 7
        return [day - timedelta(days=i) for i in range(n - 1, -1, -1)]
    if campaign_start is None:
        return None
    a, b = (int(x) for x in rng.split("-"))
    start = date.fromisoformat(campaign_start)
    days = [start + timedelta(days=i - 1) for i in range(a, b + 1)]
    return [d for d in days if d <= day]


def target_value(
    data: GroupData, target: Target, day: date, now: datetime
) -> tuple[float | None, str]:
    """A target's current value and the period it covers (SPEC 5, 8)."""
    window = metric_window(target.metric)
    if window is not None:
        w = metrics.parse_window(window)
        cohort_day = metrics.report_cohort_day(day, w)
        return cell(data, cohort_day, window, now).rate, cohort_day.isoformat()
    days = range_days(target.range, day, data.settings.campaign_start)
    if not days:
        return None, target.range or ""
    value, _ = ranged_value(data, target.metric, days)
    return value, f"{days[0].isoformat()}..{days[-1].isoformat()}"


def ranged_value(data: GroupData, metric: str, days: Sequence[date]) -> tuple[float | None, int]:
    """A ranged metric over local days A..B and its sample: the mean of the daily active
    rates and the last day's audience, or the referral rate of A..B and its audience."""
    if metric == "referral_rate":
        h, first, last = data.history, days[0], days[-1]
        ref = insights.referral(h, insights.entries(h, first, last), first, last)
        rate, audience = ref["rate"], ref["audience"]
        assert rate is None or isinstance(rate, float)
        assert isinstance(audience, int)
        return rate, audience
    level = Level.RESPONSE if metric == "response_rate" else Level.INTERACTION
    daily = [active_rate_on(data, d, level) for d in days]
    return metrics.mean_rate([rate for _, _, rate in daily]), daily[-1][1] or 0


def earliest_day_needed(targets: list[Target], day: date, settings: GroupSettings) -> date:
    """The first local day a report of `day` reads: its windows' and cohort targets'
    cohorts, and its ranged targets' days."""
    cohorts = [*settings.windows, *(metric_window(t.metric) for t in targets)]
    firsts = [metrics.report_cohort_day(day, metrics.parse_window(w)) for w in cohorts if w]
    ranges = metric_days(targets, settings)
    return min([day, *firsts, *(day - timedelta(days=n) for n in ranges)])


def metric_days(targets: list[Target], settings: GroupSettings) -> list[int]:
    out = []
    for t in targets:
        if t.metric in RANGED_METRICS:
            if t.range and t.range.startswith("last "):
                out.append(int(t.range.split()[1]))
            elif t.range and settings.campaign_start:
                out.append(400)
    return out


def r4(rate: float | None) -> float | None:
    """Rates are rounded only when printed (SPEC 8)."""
    return None if rate is None else round(rate, 4)


async def day_report(
    repo: Repo, config: Config, chat_id: int, day: date, now: datetime
) -> dict[str, object]:
    """The report of one local day: SPEC 8's JSON structure."""
    settings = await group_settings(repo, config, chat_id)
    targets = await targets_in_force(repo, settings, chat_id)
    first = earliest_day_needed(targets, day, settings)
    only = days_suffice(settings, targets, [day], first)
    data = await load_group(
        repo, config, chat_id, first, day, now=now, days_only=only, settings=settings
    )
    return report_from(data, targets, day, now)


def days_suffice(
    settings: GroupSettings, targets: list[Target], days: list[date], first: date
) -> bool:
    """Whether the reports of `days` read only the numbers of days from `first` at the
    rollup windows (then load_group need not read the whole history)."""
    windows = metrics.rollup_windows(settings.windows)
    names = [*settings.windows, *(metric_window(t.metric) for t in targets)]
    for name in names:
        if name is None:
            continue
        if name not in windows:
            return False
        w = metrics.parse_window(name)
        if any(metrics.report_cohort_day(d, w) < first for d in days):
            return False
    if any(t.metric == "referral_rate" for t in targets):
        return False  # inviters and the range's audience: the whole history
    return all(
        t.range is None or t.range.startswith("last ")
        for t in targets
        if t.metric in ACTIVE_METRICS
    )


def report_from(
    data: GroupData, targets: list[Target], day: date, now: datetime
) -> dict[str, object]:
    numbers = numbers_on(data, day, now)
    retention: dict[str, object] = {}
    for name in data.settings.windows:
        cohort_day = metrics.report_cohort_day(day, metrics.parse_window(name))
        c = cell(data, cohort_day, name, now)
        retention[name] = {
            "cohort": cohort_day.isoformat(),
            "retained": c.retained,
            "matured": c.matured,
            "pending": c.pending,
            "rate": r4(c.rate),
        }
    resp_users, audience, resp_rate = active_rate_on(data, day, Level.RESPONSE)
    int_users, _, int_rate = active_rate_on(data, day, Level.INTERACTION)
    target_rows: list[dict[str, object]] = []
    for target in targets:
        value, period = target_value(data, target, day, now)
        target_rows.append(
            {
                "metric": target.metric,
                "target": target.value,
                "value": r4(value),
                "range": period,
                "met": None if value is None else value >= target.value,
            }
        )
    return {
        "chat_id": data.chat_id,
        "date": day.isoformat(),
        "timezone": data.settings.timezone,
        "joins": numbers.joins,
        "leaves": numbers.leaves,
        "headcount_end": numbers.headcount_end,
        "retention": retention,
        "active": {
            "audience": audience,
            "response": {"users": resp_users, "rate": r4(resp_rate)},
            "interaction": {"users": int_users, "rate": r4(int_rate)},
        },
        "targets": target_rows,
    }


def net_change(data: GroupData, day: date, now: datetime) -> int | None:
    """headcount_end(D) − headcount_end(D−1) (SPEC 9)."""
    today = numbers_on(data, day, now).headcount_end
    before = numbers_on(data, day - timedelta(days=1), now).headcount_end
    return None if today is None or before is None else today - before


class Digest(NamedTuple):
    report: dict[str, object]  # SPEC 8's JSON structure
    net: int | None  # head-count change against the day before
    changes: list[float | None]  # each target's value change against the day before
    settings: GroupSettings
    headcount_now: int | None  # ours when it was read (the daily drift check)
    top_source: dict[str, object] | None = None  # the day's top source, its day-0 retention


async def digest(repo: Repo, config: Config, chat_id: int, day: date, now: datetime) -> Digest:
    """The day's report, with what the digest adds to it (SPEC 6)."""
    return (await digests(repo, config, [chat_id], now, day))[chat_id]


def digest_day(settings: GroupSettings, now: datetime) -> date:
    """The local day that just ended (SPEC 6)."""
    return metrics.local_day(now, settings.tz) - timedelta(days=1)


ROUND_PART = 100  # groups a digest round reads in one transaction


async def digests(
    repo: Repo, config: Config, chat_ids: Sequence[int], now: datetime, day: date | None = None
) -> dict[int, Digest]:
    """`digest` of several groups (those due at one time), read at once: of `day`, or of
    the local day that just ended in each group."""
    out: dict[int, Digest] = {}
    async for part in digest_parts(repo, config, chat_ids, now, day):
        out.update(part)
    return out


async def digest_parts(
    repo: Repo, config: Config, chat_ids: Sequence[int], now: datetime, day: date | None = None
) -> AsyncIterator[dict[int, Digest]]:
    """`digests`, `ROUND_PART` groups at a time (each part one transaction, so writes to
    the others wait for no more than one part; the caller sends a part while the next is
    read)."""
    for i in range(0, len(chat_ids), ROUND_PART):
        part = chat_ids[i : i + ROUND_PART]
        settings = await settings_of(repo, config, part)
        targets = await targets_of(repo, settings)
        asks, days = [], {}
        for c in part:
            s = settings[c]
            d = days[c] = day if day is not None else digest_day(s, now)
            first = earliest_day_needed(targets[c], d, s) - timedelta(days=1)
            only = days_suffice(s, targets[c], [d - timedelta(days=1), d], first)
            # from today on: the people whose events since the last kept day give the
            # head-count now (the daily drift check)
            today = metrics.local_day(now, s.tz)
            asks.append(Ask(c, first, d, s, days_only=only, people_from=today))
        data = await load_groups(repo, asks, now)
        yield {c: _digest(data[c], targets[c], days[c], now) for c in part}


def _digest(data: GroupData, targets: list[Target], day: date, now: datetime) -> Digest:
    changes = []
    for target in targets:
        today, _ = target_value(data, target, day, now)
        before, _ = target_value(data, target, day - timedelta(days=1), now)
        changes.append(None if today is None or before is None else today - before)
    return Digest(
        report_from(data, targets, day, now),
        net_change(data, day, now),
        changes,
        data.settings,
        metrics.headcount_at(data.history, now),
        top_source(data, day, now),
    )


async def recent_days(
    repo: Repo,
    config: Config,
    chat_id: int,
    days: int,
    now: datetime,
    *,
    active: bool = True,
    days_only: bool = True,
) -> tuple[GroupData, list[date]]:
    """The group's data and its `days` most recent local days ending today, oldest first."""
    settings = await group_settings(repo, config, chat_id)
    last = metrics.local_day(now, settings.tz)
    span = [last - timedelta(days=i) for i in range(days - 1, -1, -1)]
    # one day more than shown: day1 of the oldest row's previous cohort, net changes
    data = await load_group(
        repo,
        config,
        chat_id,
        span[0] - timedelta(days=1),
        last,
        now=now,
        active=active,
        days_only=days_only,
        settings=settings,
    )
    return data, span


async def retention_rows(
    repo: Repo, config: Config, chat_id: int, days: int, now: datetime
) -> tuple[list[dict[str, object]], GroupSettings]:
    """The `days` most recent local days ending today, one row each (SPEC 9); the activity
    only of the days kept now (a kept row holds every number of its day)."""
    data, span = await recent_days(repo, config, chat_id, days, now, active=False)
    rows = [cohort_row(data, day, now) for day in span]
    return rows, data.settings


def cohort_row(data: GroupData, day: date, now: datetime) -> dict[str, object]:
    """A join day's joins and its retention at every configured window (unrounded)."""
    cells = {}
    for name in data.settings.windows:
        c = cell(data, day, name, now)
        cells[name] = {
            "retained": c.retained,
            "matured": c.matured,
            "pending": c.pending,
            "rate": c.rate,
        }
    return {"day": day.isoformat(), "joins": numbers_on(data, day, now).joins, "cells": cells}


async def active_rows(
    repo: Repo, config: Config, chat_id: int, days: int, now: datetime
) -> list[dict[str, object]]:
    """Daily audience and response/interaction rates of the last `days` local days."""
    data, span = await recent_days(repo, config, chat_id, days, now)
    rows: list[dict[str, object]] = []
    for day in span:
        resp, audience, resp_rate = active_rate_on(data, day, Level.RESPONSE)
        inter, _, inter_rate = active_rate_on(data, day, Level.INTERACTION)
        rows.append(
            {
                "day": day.isoformat(),
                "audience": audience,
                "response": {"users": resp, "rate": resp_rate},
                "interaction": {"users": inter, "rate": inter_rate},
            }
        )
    return rows


class TrendPoint(NamedTuple):
    """One day of a trend: the rate, its sample (matured joins, or the audience), pending."""

    day: date
    value: float | None
    n: int | None
    pending: bool  # not final yet: joins still maturing, or the day is not over


async def metric_series(
    repo: Repo, config: Config, chat_id: int, metric: str, days: int, now: datetime
) -> tuple[list[TrendPoint], float | None]:
    """One point per local day of a metric (cohort rate or daily active rate), and its target."""
    window = metric_window(metric)
    windows = metrics.rollup_windows((await group_settings(repo, config, chat_id)).windows)
    only = window is None or window in windows
    data, span = await recent_days(repo, config, chat_id, days, now, days_only=only)
    series: list[TrendPoint] = []
    for day in span:
        if window is not None:
            c = cell(data, day, window, now)
            series.append(TrendPoint(day, c.rate, c.matured, c.pending > 0))
        else:
            rate, audience = ranged_value(data, metric, [day])
            series.append(TrendPoint(day, rate, audience, day == span[-1]))
    target = next(
        (
            t.value
            for t in await targets_in_force(repo, data.settings, chat_id)
            if t.metric == metric
        ),
        None,
    )
    return series, target


def day_start_utc(day_iso: object, settings: GroupSettings) -> datetime:
    start: datetime = metrics.local_day_bounds(date.fromisoformat(str(day_iso)), settings.tz)[0]
    return start


async def daily_rows(
    repo: Repo, config: Config, chat_id: int, days: int, now: datetime
) -> list[dict[str, object]]:
    """One row of every daily number per local day (CSV export), oldest first."""
    data, span = await recent_days(repo, config, chat_id, days, now)
    rows: list[dict[str, object]] = []
    for day in span:
        resp, audience, resp_rate = active_rate_on(data, day, Level.RESPONSE)
        inter, _, inter_rate = active_rate_on(data, day, Level.INTERACTION)
        n = numbers_on(data, day, now)
        row: dict[str, object] = {
            "date": day.isoformat(),
            "joins": n.joins,
            "leaves": n.leaves,
            "headcount_end": n.headcount_end,
            "audience": audience,
            "response_users": resp,
            "response_rate": r4(resp_rate),
            "interaction_users": inter,
            "interaction_rate": r4(inter_rate),
        }
        for name in metrics.DEFAULT_WINDOWS:
            row[f"retention_{name}"] = r4(cell(data, day, name, now).rate)
        rows.append(row)
    return rows


DRIFT_SHARE, DRIFT_PEOPLE = 0.02, 3  # SPEC 4: more than 2 % and more than 3 people


def headcount_drift(
    ours: int | None, telegram_count: int, known_not_members: int
) -> tuple[int, int] | None:
    """(Telegram's members, ours) when our head-count, at the time getChatMemberCount was
    read, drifted from it."""
    if ours is None:
        return None
    theirs = max(0, telegram_count - known_not_members)
    gap = abs(theirs - ours)
    if gap > DRIFT_PEOPLE and gap > DRIFT_SHARE * max(theirs, 1):
        return theirs, ours
    return None


def span_days(day_from: date, day_to: date) -> list[date]:
    return [day_from + timedelta(days=i) for i in range((day_to - day_from).days + 1)]


async def cohort_rows_between(
    repo: Repo, config: Config, chat_id: int, day_from: date, day_to: date, now: datetime
) -> list[dict[str, object]]:
    """`retention_rows` for the join days A..B (the dashboard's heat-map), rates rounded."""
    data = await load_group(repo, config, chat_id, day_from, day_to, now=now, days_only=True)
    rows = [cohort_row(data, day, now) for day in span_days(day_from, day_to)]
    for row in rows:
        cells: dict[str, dict[str, object]] = row["cells"]  # type: ignore[assignment]
        for cell in cells.values():
            cell["rate"] = r4(cell["rate"])  # type: ignore[arg-type]
    return rows


async def active_rows_between(
    repo: Repo, config: Config, chat_id: int, day_from: date, day_to: date, now: datetime
) -> list[dict[str, object]]:
    """`active_rows` for the local days A..B, rates rounded."""
    data = await load_group(repo, config, chat_id, day_from, day_to, now=now, days_only=True)
    rows: list[dict[str, object]] = []
    for day in span_days(day_from, day_to):
        resp, audience, resp_rate = active_rate_on(data, day, Level.RESPONSE)
        inter, _, inter_rate = active_rate_on(data, day, Level.INTERACTION)
        rows.append(
            {
                "day": day.isoformat(),
                "audience": audience,
                "response": {"users": resp, "rate": r4(resp_rate)},
                "interaction": {"users": inter, "rate": r4(inter_rate)},
            }
        )
    return rows
