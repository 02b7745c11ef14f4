"""Hand-checked scenarios for bot.metrics, each named after the SPEC rule it checks."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.events import ActivityMark, HostChange, Level, MemberKind, MembershipEvent
from bot.metrics import (
    GroupHistory,
    RetentionCell,
    Window,
    active_rate,
    active_users,
    audience,
    checkpoint,
    cohort,
    headcount_at,
    headcount_end,
    in_group_at,
    joins_on,
    leaves_on,
    local_day,
    local_day_bounds,
    mean_rate,
    parse_window,
    pooled,
    report_cohort_day,
    retention,
)

SH = ZoneInfo("Asia/Shanghai")
LA = ZoneInfo("America/Los_Angeles")
NY = ZoneInfo("America/New_York")
BER = ZoneInfo("Europe/Berlin")
CHAT = -100
H1, H24, H48 = parse_window("1h"), parse_window("24h"), parse_window("48h")
DAY0, DAY1 = parse_window("day0"), parse_window("day1")
FAR = datetime(2030, 1, 1, tzinfo=UTC)
D = date(2026, 11, 20)
NEXT = D + timedelta(days=1)


def at(local: str, tz: ZoneInfo = SH) -> datetime:
    """A local wall-clock time as a UTC instant."""
    return datetime.fromisoformat(local).replace(tzinfo=tz).astimezone(UTC)


def join(user: int, local: str, tz: ZoneInfo = SH, seq: int = 0) -> MembershipEvent:
    return MembershipEvent(CHAT, user, MemberKind.JOIN, at(local, tz), seq)


def leave(user: int, local: str, tz: ZoneInfo = SH, seq: int = 0) -> MembershipEvent:
    return MembershipEvent(CHAT, user, MemberKind.LEAVE, at(local, tz), seq)


def promote(
    user: int, local: str, tz: ZoneInfo = SH, seq: int = 0, is_host: bool = True
) -> HostChange:
    return HostChange(CHAT, user, at(local, tz), is_host, seq)


def history(
    *events: MembershipEvent,
    tz: ZoneInfo = SH,
    start: str | None = "2026-11-19T08:00",
    baseline: int = 0,
    hosts: tuple[HostChange, ...] = (),
    always_hosts: frozenset[int] = frozenset(),
    bots: frozenset[int] = frozenset(),
    posts: dict[int, str] | None = None,
) -> GroupHistory:
    return GroupHistory(
        tz=tz,
        tracking_start_utc=None if start is None else at(start, tz),
        baseline_count=baseline,
        membership=list(events),
        host_changes=hosts,
        always_hosts=always_hosts,
        bots=bots,
        first_post_utc={u: at(t, tz) for u, t in (posts or {}).items()},
    )


def users(h: GroupHistory, day: date) -> list[int]:
    return [u for u, _ in cohort(h, day)]


# SPEC 3: retention


def test_spec3_rejoin_before_checkpoint_counts_as_retained() -> None:
    h = history(
        join(1, "2026-11-20T10:00"), leave(1, "2026-11-20T10:20"), join(1, "2026-11-20T10:40")
    )
    assert retention(h, D, H1, FAR) == RetentionCell(1, 1, 0)
    assert users(h, D) == [1]  # the rejoin on the same day is not a second entry


def test_spec3_leave_after_checkpoint_is_retained_leave_before_is_lost() -> None:
    h = history(
        join(1, "2026-11-20T10:00"),
        leave(1, "2026-11-20T11:01"),
        join(2, "2026-11-20T10:00"),
        leave(2, "2026-11-20T10:59"),
    )
    assert retention(h, D, H1, FAR) == RetentionCell(1, 2, 0)
    assert retention(h, D, H1, FAR).rate == 0.5


def test_spec3_event_exactly_at_checkpoint_belongs_after() -> None:
    left = history(join(1, "2026-11-20T10:00"), leave(1, "2026-11-20T11:00"))
    assert retention(left, D, H1, FAR).retained == 1  # still in at 11:00
    back = history(
        join(1, "2026-11-20T10:00"), leave(1, "2026-11-20T10:30"), join(1, "2026-11-20T11:00")
    )
    assert retention(back, D, H1, FAR).retained == 0  # not yet back at 11:00
    midnight = history(join(1, "2026-11-20T10:00"), leave(1, "2026-11-21T00:00"))
    assert retention(midnight, D, DAY0, FAR).retained == 1
    assert (leaves_on(midnight, D), leaves_on(midnight, NEXT)) == (0, 1)


def test_spec3_join_at_exactly_local_midnight_belongs_to_new_day() -> None:
    h = history(join(1, "2026-11-21T00:00"))
    assert users(h, D) == []
    assert users(h, NEXT) == [1]
    assert local_day(at("2026-11-21T00:00"), SH) == NEXT


def test_spec3_double_join_on_one_day_counts_once_with_first_join() -> None:
    h = history(
        join(1, "2026-11-20T09:00"), leave(1, "2026-11-20T09:10"), join(1, "2026-11-20T20:00")
    )
    assert cohort(h, D) == [(1, at("2026-11-20T09:00"))]
    assert joins_on(h, D) == 1
    assert retention(h, D, H1, FAR) == RetentionCell(0, 1, 0)  # out at 10:00
    assert retention(h, D, DAY0, FAR) == RetentionCell(1, 1, 0)


def test_spec2_join_while_in_and_leave_while_out_are_no_ops() -> None:
    h = history(
        join(1, "2026-11-20T09:00"),
        join(1, "2026-11-20T09:05"),  # duplicate join: no new interval
        leave(1, "2026-11-20T09:30"),
        leave(1, "2026-11-20T09:40"),  # duplicate leave: not a second leave
    )
    assert cohort(h, D) == [(1, at("2026-11-20T09:00"))]
    assert leaves_on(h, D) == 1


def test_spec3_rejoin_on_later_day_enters_later_cohort() -> None:
    h = history(
        join(1, "2026-11-20T09:00"), leave(1, "2026-11-20T12:00"), join(1, "2026-11-21T09:00")
    )
    assert users(h, D) == [1]
    assert users(h, NEXT) == [1]
    assert retention(h, D, DAY0, FAR) == RetentionCell(0, 1, 0)
    assert retention(h, D, DAY1, FAR) == RetentionCell(1, 1, 0)  # back by the end of D+1


def test_spec3_pending_joins_are_not_counted() -> None:
    h = history(join(1, "2026-11-20T09:00"), join(2, "2026-11-20T22:30"))
    now = at("2026-11-20T23:00")
    assert retention(h, D, H1, now) == RetentionCell(1, 1, 1)
    assert retention(h, D, DAY0, now) == RetentionCell(0, 0, 2)
    assert retention(h, D, DAY0, now).rate is None


def test_spec9_matured_means_checkpoint_not_after_now() -> None:
    h = history(join(1, "2026-11-20T09:00"))
    assert retention(h, D, H1, at("2026-11-20T10:00")) == RetentionCell(1, 1, 0)
    assert retention(h, D, H1, at("2026-11-20T09:59:59")) == RetentionCell(0, 0, 1)


def test_spec3_promotion_to_admin_is_retained_spec9_lowers_headcount_without_leave() -> None:
    h = history(join(1, "2026-11-20T09:00"), baseline=5, hosts=(promote(1, "2026-11-20T09:30"),))
    assert retention(h, D, H1, FAR).retained == 1
    assert headcount_at(h, at("2026-11-20T09:15")) == 6
    assert headcount_at(h, at("2026-11-20T09:45")) == 5
    assert leaves_on(h, D) == 0
    assert users(h, D) == [1]  # host status is taken at the join


def test_spec2_host_and_bot_leaves_are_not_member_leaves() -> None:
    h = history(
        leave(2, "2026-11-20T09:00"),
        leave(3, "2026-11-20T09:00"),
        leave(4, "2026-11-20T09:00"),
        hosts=(promote(2, "2026-11-19T07:00"),),  # a host when tracking began
        always_hosts=frozenset({4}),
        bots=frozenset({3}),
        baseline=10,
    )
    assert leaves_on(h, D) == 0
    assert headcount_at(h, at("2026-11-20T10:00")) == 10


def test_spec2_pre_tracking_member_leave_lowers_headcount_once() -> None:
    h = history(leave(7, "2026-11-20T10:00"), join(7, "2026-11-20T12:00"), baseline=10)
    assert headcount_at(h, at("2026-11-20T09:00")) == 10  # already in the baseline
    assert headcount_at(h, at("2026-11-20T11:00")) == 9
    assert headcount_at(h, at("2026-11-20T13:00")) == 10
    assert leaves_on(h, D) == 1
    assert users(h, D) == [7]  # the rejoin is a new interval


def test_spec2_pre_tracking_poster_is_baseline_not_added_twice() -> None:
    h = history(
        join(8, "2026-11-20T10:00"),  # a stale join after a post: already in
        baseline=10,
        posts={8: "2026-11-19T09:00", 9: "2026-11-19T09:00"},
    )
    assert users(h, D) == []
    assert headcount_at(h, at("2026-11-20T13:00")) == 10
    assert audience(h, D) == 10
    assert in_group_at(h, 9, at("2026-11-19T00:00"))


def test_spec2_admin_at_tracking_start_demoted_later_adds_a_member() -> None:
    h = history(
        baseline=10,
        hosts=(promote(1, "2026-11-19T08:00"), promote(1, "2026-11-20T12:00", is_host=False)),
    )
    assert headcount_at(h, at("2026-11-19T07:00")) == 10  # admins read at the start: not members
    assert headcount_at(h, at("2026-11-20T11:00")) == 10
    assert headcount_at(h, at("2026-11-20T13:00")) == 11
    assert audience(h, date(2026, 11, 19)) == 10
    assert audience(h, D) == 11
    assert users(h, D) == []  # a demotion is not a join


def test_spec9_headcount_before_tracking_is_none_and_baseline_counts_from_day_start() -> None:
    h = history(join(1, "2026-11-19T12:00"), start="2026-11-19T08:00", baseline=4)
    assert headcount_at(h, at("2026-11-18T23:59")) is None
    assert headcount_at(h, at("2026-11-19T00:00")) == 4
    assert headcount_at(h, at("2026-11-19T13:00")) == 5
    assert audience(h, date(2026, 11, 18)) is None
    assert audience(h, date(2026, 11, 19)) == 5
    assert headcount_at(history(join(1, "2026-11-19T12:00"), start=None), FAR) is None
    assert audience(history(start=None), D) is None


def test_spec9_headcount_end_of_a_running_day_is_now() -> None:
    h = history(join(1, "2026-11-20T09:00"), join(2, "2026-11-20T15:00"), baseline=3)
    assert headcount_end(h, D, at("2026-11-20T12:00")) == 4
    assert headcount_end(h, D, FAR) == 5
    assert headcount_end(h, D - timedelta(days=1), FAR) == 3


# SPEC 4: audience and active rates


def test_spec4_audience_counts_start_members_plus_joiners_during_day() -> None:
    h = history(
        join(1, "2026-11-20T09:00"),
        leave(1, "2026-11-20T09:30"),
        join(1, "2026-11-20T10:00"),  # the same person twice: counted once
        join(2, "2026-11-20T22:00"),
        leave(9, "2026-11-20T12:00"),  # a baseline member leaving: still present at the start
        join(3, "2026-11-19T12:00"),
        leave(3, "2026-11-19T13:00"),  # gone before D
        baseline=10,
    )
    assert headcount_at(h, local_day_bounds(D, SH)[0]) == 10
    assert audience(h, D) == 12
    assert audience(h, NEXT) == 11  # baseline − 9 + 1 + 2
    assert (joins_on(h, D), leaves_on(h, D)) == (2, 2)


def test_spec4_active_users_are_distinct_per_level_and_local_day() -> None:
    lvl_r, lvl_i = Level.RESPONSE, Level.INTERACTION
    marks = [
        ActivityMark(CHAT, 1, lvl_r, at("2026-11-20T09:00"), 1),
        ActivityMark(CHAT, 1, lvl_r, at("2026-11-20T10:00"), 2),
        ActivityMark(CHAT, 2, lvl_i, at("2026-11-20T10:00"), 3),
        ActivityMark(CHAT, 3, lvl_r, at("2026-11-21T00:00"), 4),
    ]
    assert active_users(marks, D, SH, lvl_r) == 1
    assert active_users(marks, D, SH, lvl_i) == 1
    assert active_users(marks, NEXT, SH, lvl_r) == 1
    assert active_rate(1, 4) == 0.25
    assert active_rate(1, 0) is None
    assert active_rate(0, None) is None


def test_spec4_mean_rate_skips_days_without_a_rate() -> None:
    assert mean_rate([0.2, None, 0.4]) == pytest.approx(0.3)
    assert mean_rate([None, None]) is None
    assert mean_rate([]) is None


def test_spec3_pooled_rate_is_sum_retained_over_sum_matured_not_mean() -> None:
    cells = [RetentionCell(1, 1, 0), RetentionCell(1, 3, 2), RetentionCell(0, 0, 1)]
    total = pooled(cells)
    assert total == RetentionCell(2, 4, 3)
    assert total.rate == 0.5  # the mean of daily rates would be (1 + 1/3) / 2
    assert pooled([]).rate is None


# SPEC 2, 3: days and checkpoints in a timezone with DST


@pytest.mark.parametrize(
    ("tz", "day", "hours"),
    [
        (NY, date(2026, 3, 8), 23),
        (NY, date(2026, 11, 1), 25),
        (BER, date(2026, 3, 29), 23),
        (BER, date(2026, 10, 25), 25),
        (BER, date(2026, 10, 26), 24),
    ],
)
def test_spec2_dst_day_bounds_are_local_midnights(tz: ZoneInfo, day: date, hours: int) -> None:
    lo, hi = local_day_bounds(day, tz)
    assert hi - lo == timedelta(hours=hours)
    assert (lo.astimezone(tz).date(), lo.astimezone(tz).time()) == (day, time(0))
    assert local_day(lo, tz) == day
    assert local_day(hi - timedelta(microseconds=1), tz) == day


def test_spec3_dst_day0_checkpoint_is_next_local_midnight() -> None:
    spring, fall = date(2026, 3, 8), date(2026, 11, 1)
    t = at("2026-03-08T01:30", NY)
    assert (
        checkpoint(t, DAY0, NY)
        == at("2026-03-09T00:00", NY)
        == t + timedelta(hours=21, minutes=30)
    )
    assert checkpoint(t, DAY1, NY) == at("2026-03-10T00:00", NY)
    t = at("2026-11-01T00:30", NY)
    assert checkpoint(t, DAY0, NY) - t == timedelta(hours=24, minutes=30)
    # 24h after a join early on the 25-hour day is still the same local day
    assert local_day(checkpoint(t, H24, NY), NY) == fall
    h = history(
        join(1, "2026-11-01T00:30", NY),
        leave(1, "2026-11-01T23:30", NY),
        tz=NY,
        start="2026-10-30T08:00",
    )
    assert retention(h, fall, H24, FAR).retained == 1  # 24h is 23:30 local: not yet left
    assert retention(h, fall, DAY0, FAR).retained == 0
    assert local_day(at("2026-03-08T03:00", NY), NY) == spring  # 02:00-03:00 does not exist


def test_spec3_day1_window_is_end_of_next_local_day_across_dst() -> None:
    h = history(
        join(1, "2026-03-28T22:00", BER),
        leave(1, "2026-03-29T23:59", BER),
        join(2, "2026-03-28T22:00", BER),
        leave(2, "2026-03-30T00:00", BER),
        tz=BER,
        start="2026-03-27T10:00",
    )
    day = date(2026, 3, 28)
    assert checkpoint(at("2026-03-28T22:00", BER), DAY1, BER) == datetime(
        2026, 3, 29, 22, tzinfo=UTC
    )
    assert retention(h, day, DAY1, FAR) == RetentionCell(1, 2, 0)
    assert retention(h, day, DAY1, at("2026-03-29T23:59", BER)) == RetentionCell(0, 0, 2)


def test_spec9_24h_48h_windows_and_report_cohort_day() -> None:
    h = history(
        join(1, "2026-11-19T10:00"), leave(1, "2026-11-20T12:00"), join(2, "2026-11-18T10:00")
    )
    assert checkpoint(at("2026-11-19T10:00"), H24, SH) == at("2026-11-20T10:00")
    assert retention(h, date(2026, 11, 19), H24, FAR) == RetentionCell(1, 1, 0)
    assert retention(h, date(2026, 11, 19), H48, FAR) == RetentionCell(0, 1, 0)
    assert report_cohort_day(D, H1) == D
    assert report_cohort_day(D, parse_window("23h")) == D
    assert report_cohort_day(D, H24) == D - timedelta(days=1)
    assert report_cohort_day(D, parse_window("25h")) == D - timedelta(days=2)
    assert report_cohort_day(D, H48) == D - timedelta(days=2)
    assert report_cohort_day(D, DAY0) == D
    assert report_cohort_day(D, parse_window("day7")) == D - timedelta(days=7)


def test_spec2_same_events_fall_on_different_days_in_shanghai_and_los_angeles() -> None:
    # 2026-11-20 02:00 UTC is 10:00 on the 20th in Shanghai, 18:00 on the 19th in Los Angeles
    t = datetime(2026, 11, 20, 2, tzinfo=UTC)
    gone = t + timedelta(hours=8)  # 18:00 in Shanghai, 02:00 on the 20th in Los Angeles
    events = [
        MembershipEvent(CHAT, 1, MemberKind.JOIN, t),
        MembershipEvent(CHAT, 1, MemberKind.LEAVE, gone),
    ]
    start = datetime(2026, 11, 18, tzinfo=UTC)
    sh = GroupHistory(SH, start, 0, events)
    la = GroupHistory(LA, start, 0, events)
    assert [u for u, _ in cohort(sh, D)] == [1]
    assert [u for u, _ in cohort(la, D - timedelta(days=1))] == [1]
    assert retention(sh, D, DAY0, FAR).retained == 0  # left before midnight in Shanghai
    assert retention(la, D - timedelta(days=1), DAY0, FAR).retained == 1  # left after midnight
    assert (leaves_on(sh, D), leaves_on(la, D)) == (1, 1)
    assert (audience(sh, D), audience(la, D)) == (1, 1)
    assert audience(la, D - timedelta(days=1)) == 1


# windows


@pytest.mark.parametrize(
    ("name", "window"),
    [
        ("1h", Window("1h", 1, None)),
        ("24h", Window("24h", 24, None)),
        (" 48H ", Window("48h", 48, None)),
        ("day0", Window("day0", None, 0)),
        ("day7", Window("day7", None, 7)),
    ],
)
def test_parse_window_accepts_hours_and_days(name: str, window: Window) -> None:
    assert parse_window(name) == window


@pytest.mark.parametrize(
    "name",
    ["", "0h", "h", "-1h", "1.5h", "day", "day-1", "day01", "01h", "1d", "d1", "9999h", "day999"],
)
def test_parse_window_rejects_anything_else(name: str) -> None:
    with pytest.raises(ValueError, match="window"):
        parse_window(name)
