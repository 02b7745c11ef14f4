"""Hand-checked scenarios, one per rule of SPEC 3, 4 and 9, on the pure metrics."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.events import HostChange, MemberKind, MembershipEvent
from bot.metrics import (
    GroupHistory,
    RetentionCell,
    audience,
    checkpoint,
    cohort,
    headcount_at,
    headcount_end,
    leaves_on,
    local_day_bounds,
    mean_rate,
    parse_window,
    pooled,
    report_cohort_day,
    retention,
)

SH = ZoneInfo("Asia/Shanghai")
NY = ZoneInfo("America/New_York")
CHAT = -1
W1H, DAY0, DAY1 = parse_window("1h"), parse_window("day0"), parse_window("day1")
FAR = datetime(2030, 1, 1, tzinfo=UTC)


def at(text: str, tz: ZoneInfo = SH) -> datetime:
    """A local wall-clock time, as UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=tz).astimezone(UTC)


def join(user: int, when: str, tz: ZoneInfo = SH) -> MembershipEvent:
    return MembershipEvent(CHAT, user, MemberKind.JOIN, at(when, tz))


def leave(user: int, when: str, tz: ZoneInfo = SH) -> MembershipEvent:
    return MembershipEvent(CHAT, user, MemberKind.LEAVE, at(when, tz))


def history(
    *events: MembershipEvent,
    tz: ZoneInfo = SH,
    baseline: int = 0,
    start: str = "2026-11-19T08:00",
    hosts: tuple[HostChange, ...] = (),
    bots: frozenset[int] = frozenset(),
) -> GroupHistory:
    return GroupHistory(tz, at(start, tz), baseline, list(events), hosts, frozenset(), bots)


D = date(2026, 11, 20)


def test_rejoin_before_checkpoint_counts_as_retained() -> None:
    h = history(
        join(1, "2026-11-20T10:00"), leave(1, "2026-11-20T10:20"), join(1, "2026-11-20T10:40")
    )
    assert retention(h, D, W1H, FAR) == RetentionCell(1, 1, 0)


def test_leave_before_checkpoint_is_lost_and_after_is_retained() -> None:
    h = history(
        join(1, "2026-11-20T10:00"),
        leave(1, "2026-11-20T10:59"),
        join(2, "2026-11-20T10:00"),
        leave(2, "2026-11-20T11:01"),
    )
    assert retention(h, D, W1H, FAR) == RetentionCell(1, 2, 0)


def test_event_exactly_at_checkpoint_belongs_to_what_comes_after() -> None:
    # a leave at exactly t+1h: at the checkpoint the user is still in
    h = history(join(1, "2026-11-20T10:00"), leave(1, "2026-11-20T11:00"))
    assert retention(h, D, W1H, FAR).retained == 1
    # a leave at exactly local midnight belongs to the new day: retained at day0
    h = history(join(1, "2026-11-20T10:00"), leave(1, "2026-11-21T00:00"))
    assert retention(h, D, DAY0, FAR).retained == 1
    assert leaves_on(h, D) == 0
    assert leaves_on(h, D + timedelta(days=1)) == 1


def test_join_at_local_midnight_belongs_to_the_new_day() -> None:
    h = history(join(1, "2026-11-21T00:00"))
    assert cohort(h, D) == []
    assert [u for u, _ in cohort(h, D + timedelta(days=1))] == [1]


def test_double_join_on_one_day_counts_once_with_the_first_join() -> None:
    h = history(
        join(1, "2026-11-20T09:00"), leave(1, "2026-11-20T09:10"), join(1, "2026-11-20T20:00")
    )
    assert cohort(h, D) == [(1, at("2026-11-20T09:00"))]
    # 1h from the first join (09:00): out at 10:00
    assert retention(h, D, W1H, FAR) == RetentionCell(0, 1, 0)
    assert retention(h, D, DAY0, FAR) == RetentionCell(1, 1, 0)


def test_rejoin_on_a_later_day_enters_that_cohort() -> None:
    h = history(
        join(1, "2026-11-20T09:00"), leave(1, "2026-11-20T12:00"), join(1, "2026-11-21T09:00")
    )
    assert [u for u, _ in cohort(h, D)] == [1]
    assert [u for u, _ in cohort(h, D + timedelta(days=1))] == [1]


def test_pending_joins_are_neither_retained_nor_lost() -> None:
    h = history(join(1, "2026-11-20T09:00"), join(2, "2026-11-20T22:30"))
    now = at("2026-11-20T23:00")
    assert retention(h, D, W1H, now) == RetentionCell(1, 1, 1)
    assert retention(h, D, DAY0, now) == RetentionCell(0, 0, 2)
    assert retention(h, D, DAY0, now).rate is None


def test_matured_means_checkpoint_not_after_now() -> None:
    h = history(join(1, "2026-11-20T09:00"))
    assert retention(h, D, W1H, at("2026-11-20T10:00")) == RetentionCell(1, 1, 0)


def test_promotion_to_admin_counts_as_retained_and_lowers_headcount() -> None:
    promote = HostChange(CHAT, 1, at("2026-11-20T09:30"), True)
    h = history(join(1, "2026-11-20T09:00"), baseline=5, hosts=(promote,))
    assert retention(h, D, W1H, FAR).retained == 1
    assert headcount_at(h, at("2026-11-20T09:15")) == 6
    assert headcount_at(h, at("2026-11-20T09:45")) == 5  # promoted: no longer a member


def test_hosts_and_bots_do_not_join_cohorts() -> None:
    admin = HostChange(CHAT, 2, at("2026-11-20T09:00"), True)
    h = history(
        join(1, "2026-11-20T09:00"),
        join(2, "2026-11-20T09:00"),
        join(3, "2026-11-20T09:00"),
        hosts=(admin,),
        bots=frozenset({3}),
    )
    assert [u for u, _ in cohort(h, D)] == [1]


def test_member_who_later_becomes_admin_stays_in_cohort() -> None:
    later = HostChange(CHAT, 1, at("2026-11-22T09:00"), True)
    h = history(join(1, "2026-11-20T09:00"), hosts=(later,))
    assert [u for u, _ in cohort(h, D)] == [1]


def test_pre_tracking_member_leave_lowers_headcount_once() -> None:
    h = history(leave(7, "2026-11-20T10:00"), baseline=10)
    assert headcount_at(h, at("2026-11-20T09:00")) == 10
    assert headcount_at(h, at("2026-11-20T11:00")) == 9
    assert cohort(h, D) == []
    assert leaves_on(h, D) == 1


def test_pre_tracking_poster_is_part_of_the_baseline_not_added_twice() -> None:
    h = GroupHistory(
        SH,
        at("2026-11-19T08:00"),
        10,
        [leave(7, "2026-11-20T10:00"), join(7, "2026-11-20T12:00")],
        first_post_utc={8: at("2026-11-19T09:00")},
    )
    assert headcount_at(h, at("2026-11-20T13:00")) == 10
    assert audience(h, D) == 10


def test_audience_is_start_members_plus_joiners_of_the_day() -> None:
    h = history(
        join(1, "2026-11-20T09:00"),
        leave(1, "2026-11-20T09:30"),
        join(2, "2026-11-20T22:00"),
        leave(9, "2026-11-20T12:00"),
        baseline=10,
    )
    assert audience(h, D) == 12  # 10 at the start (9 among them) + 1 and 2
    assert headcount_end(h, D, FAR) == 10  # 10, minus 9 who left, plus 2 who stayed
    assert audience(h, date(2026, 11, 18)) is None  # before tracking: no rate


def test_baseline_is_present_from_the_start_of_the_tracking_day() -> None:
    h = history(baseline=4, start="2026-11-20T15:00")
    assert audience(h, D) == 4
    assert headcount_at(h, at("2026-11-20T00:00")) == 4
    assert headcount_at(h, at("2026-11-19T23:59")) is None


def test_headcount_end_of_a_day_not_over_is_the_headcount_now() -> None:
    h = history(join(1, "2026-11-20T09:00"), join(2, "2026-11-20T18:00"), baseline=3)
    assert headcount_end(h, D, at("2026-11-20T12:00")) == 4
    assert headcount_end(h, D, FAR) == 5


def test_dst_day_of_23_and_25_hours() -> None:
    start, end = local_day_bounds(date(2026, 3, 8), NY)
    assert end - start == timedelta(hours=23)
    start, end = local_day_bounds(date(2026, 11, 1), NY)
    assert end - start == timedelta(hours=25)
    j = at("2026-11-01T00:30", NY)
    assert checkpoint(j, DAY0, NY) == at("2026-11-02T00:00", NY)
    assert checkpoint(j, DAY0, NY) - j == timedelta(hours=24, minutes=30)
    assert checkpoint(j, W1H, NY) == j + timedelta(hours=1)  # absolute hours


def test_dst_day_cohort_and_day0_retention() -> None:
    h = history(
        join(1, "2026-11-01T23:30", NY),
        leave(1, "2026-11-01T23:50", NY),
        join(2, "2026-11-01T00:10", NY),
        tz=NY,
        start="2026-10-31T08:00",
    )
    assert [u for u, _ in cohort(h, date(2026, 11, 1))] == [2, 1]
    assert retention(h, date(2026, 11, 1), DAY0, FAR) == RetentionCell(1, 2, 0)


def test_same_events_different_timezones_give_different_days() -> None:
    ev = MembershipEvent(CHAT, 1, MemberKind.JOIN, datetime(2026, 11, 20, 20, 0, tzinfo=UTC))
    sh = GroupHistory(SH, datetime(2026, 11, 19, tzinfo=UTC), 0, [ev])
    la = GroupHistory(ZoneInfo("America/Los_Angeles"), datetime(2026, 11, 19, tzinfo=UTC), 0, [ev])
    assert [u for u, _ in cohort(sh, date(2026, 11, 21))] == [1]
    assert [u for u, _ in cohort(la, date(2026, 11, 20))] == [1]


def test_windows_and_report_cohorts() -> None:
    assert report_cohort_day(D, parse_window("1h")) == D
    assert report_cohort_day(D, parse_window("24h")) == D - timedelta(days=1)
    assert report_cohort_day(D, parse_window("25h")) == D - timedelta(days=2)
    assert report_cohort_day(D, parse_window("day7")) == D - timedelta(days=7)
    j = at("2026-11-20T10:00")
    assert checkpoint(j, parse_window("day1"), SH) == at("2026-11-22T00:00")
    assert checkpoint(j, parse_window("48h"), SH) == j + timedelta(hours=48)
    for bad in ("0h", "1d", "day", "h1", "dayx"):
        with pytest.raises(ValueError, match="window"):
            parse_window(bad)


def test_pooled_rate_is_sum_over_sum_not_mean_of_rates() -> None:
    cell = pooled([RetentionCell(1, 1, 0), RetentionCell(1, 3, 2)])
    assert cell == RetentionCell(2, 4, 2)
    assert cell.rate == 0.5  # the mean of daily rates would be 0.667


def test_active_rate_range_is_mean_of_daily_rates_skipping_empty_days() -> None:
    assert mean_rate([0.2, None, 0.4]) == pytest.approx(0.3)
    assert mean_rate([None, None]) is None
