"""Hand-checked scenarios, one per rule of the growth numbers (SPEC 12), on pure functions:
how a join's source and inviter are read, and every number of `opsbot insights`."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from telegram import ChatMemberUpdated

from bot import insights
from bot.events import ActivityMark, HostChange, Level, MemberKind, MembershipEvent
from bot.importer import ServiceItem, import_join_source
from bot.metrics import GroupHistory
from handlers.membership import join_source as live_join_source
from handlers.membership import service_join_source
from tests import tg

SH = ZoneInfo("Asia/Shanghai")
NY = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")
CHAT = -1001
D = date(2026, 11, 20)
FAR = datetime(2030, 1, 1, tzinfo=UTC)


def at(text: str, tz: ZoneInfo = SH) -> datetime:
    """A local wall-clock time, as UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=tz).astimezone(UTC)


def join(
    user: int,
    when: str,
    source: str | None = "direct",
    inviter: int | None = None,
    tz: ZoneInfo = SH,
    seq: int = 0,
) -> MembershipEvent:
    return MembershipEvent(
        CHAT, user, MemberKind.JOIN, at(when, tz), seq, join_source=source, inviter_id=inviter
    )


def leave(user: int, when: str, tz: ZoneInfo = SH) -> MembershipEvent:
    return MembershipEvent(CHAT, user, MemberKind.LEAVE, at(when, tz))


def history(
    *events: MembershipEvent,
    tz: ZoneInfo = SH,
    baseline: int = 0,
    start: str = "2026-11-01T08:00",
    hosts: tuple[HostChange, ...] = (),
    always_hosts: frozenset[int] = frozenset(),
    bots: frozenset[int] = frozenset(),
) -> GroupHistory:
    return GroupHistory(tz, at(start, tz), baseline, list(events), hosts, always_hosts, bots)


def mark(user: int, when: str, level: Level = Level.RESPONSE, tz: ZoneInfo = SH) -> ActivityMark:
    return ActivityMark(CHAT, user, level, at(when, tz), 0)


# ---- the source and inviter of a live join --------------------------------------------

GROUP = tg.group(CHAT)
NEW, ADMIN, MEMBER = tg.user(50, "New"), tg.user(1, "Admin"), tg.user(20, "Member")


def update(actor: dict[str, Any], link: dict[str, Any] | None = None, **extra: Any) -> Any:
    raw = tg.chat_member(
        GROUP, actor, 1_795_000_000, tg.member(NEW, "left"), tg.member(NEW, "member"), link
    )["chat_member"]
    raw.update(extra)
    return ChatMemberUpdated.de_json(raw, None)


def join_source(cmu: ChatMemberUpdated) -> tuple[str, int | None]:
    source, inviter = live_join_source(cmu)
    return source, inviter.id if inviter is not None else None


def test_a_named_link_is_its_name_and_its_creator_the_inviter() -> None:
    link = tg.invite_link("https://t.me/+AbCdEf", MEMBER, name="camp-poster")
    assert join_source(update(NEW, link)) == ("link:camp-poster", 20)


def test_a_link_without_a_name_is_the_url_verbatim() -> None:
    link = tg.invite_link("https://t.me/+AbC...", ADMIN)  # shortened, as Telegram gives it
    assert join_source(update(NEW, link)) == ("link:https://t.me/+AbC...", 1)


def test_an_approved_join_request_is_request_and_the_approver_the_inviter() -> None:
    assert join_source(update(ADMIN, via_join_request=True)) == ("request", 1)


def test_a_join_request_through_a_link_is_the_link_with_the_approver_as_inviter() -> None:
    link = tg.invite_link("https://t.me/+Req", MEMBER, name="ads")
    link["creates_join_request"] = True
    assert join_source(update(ADMIN, link)) == ("link:ads", 1)


def test_added_by_someone_else_is_added_and_the_adder_the_inviter() -> None:
    assert join_source(update(MEMBER)) == ("added", 20)


def test_joining_on_ones_own_without_a_link_is_direct() -> None:
    assert join_source(update(NEW)) == ("direct", None)
    # a chat folder link carries no invite_link: direct too
    assert join_source(update(NEW, via_chat_folder_invite_link=True)) == ("direct", None)


def test_a_join_seen_only_as_a_service_message_is_added_or_direct() -> None:
    assert service_join_source(20, 50) == ("added", 20)
    assert service_join_source(50, 50) == ("direct", None)


def service_item(action: str, actor: int | None, name: str | None = "X") -> ServiceItem:
    return ServiceItem(1, at("2026-11-20T10:00"), action, actor, name, ())


def test_imported_joins_link_request_added_by_another_and_self_invite() -> None:
    assert import_join_source(service_item("join_group_by_link", 50), 50) == ("link", None)
    assert import_join_source(service_item("join_group_by_request", 50), 50) == (
        "request",
        None,
    )
    assert import_join_source(service_item("invite_members", 20), 50) == ("added", 20)
    assert import_join_source(service_item("invite_members", 50), 50) == ("direct", None)


# ---- cohort entries and referrals -----------------------------------------------------


def test_a_cohort_entry_keeps_the_source_of_its_first_join_of_the_day() -> None:
    h = history(
        join(50, "2026-11-20T09:00", "link:a"),
        leave(50, "2026-11-20T10:00"),
        join(50, "2026-11-20T11:00", "link:b"),
        join(51, "2026-11-20T12:00", None),  # stored before sources were recorded
    )
    got = [(e.user_id, e.source) for e in insights.entries(h, D, D)]
    assert got == [(50, "link:a"), (51, "direct")]


def test_a_referral_by_a_member_and_an_add_by_a_host_that_is_not_one() -> None:
    h = history(
        join(20, "2026-11-10T09:00"),  # a member
        join(50, "2026-11-20T09:00", "added", 20),
        join(51, "2026-11-20T09:30", "added", 1),  # added by the host
        join(52, "2026-11-20T10:00", "link:poster", 20),  # the member's link
        hosts=(HostChange(CHAT, 1, at("2026-11-01T08:00"), True),),
    )
    got = {e.user_id: e.referral for e in insights.entries(h, D, D)}
    assert got == {50: True, 51: False, 52: True}
    ref = insights.referral(h, insights.entries(h, D, D), D, D)
    # audience: member 20 at the start of D, 50, 51, 52 during D
    assert ref == {"referred_joins": 2, "referrers": 1, "audience": 4, "rate": 0.25}


def test_an_inviter_never_seen_counts_as_a_member_unless_a_bot() -> None:
    h = history(
        join(50, "2026-11-20T09:00", "added", 777),  # never seen before: a member
        join(51, "2026-11-20T09:00", "added", 888),
        bots=frozenset({888}),
    )
    assert [e.referral for e in insights.entries(h, D, D)] == [True, False]


def test_a_link_creator_who_left_before_the_join_is_not_a_member_then() -> None:
    h = history(
        join(20, "2026-11-10T09:00"),
        leave(20, "2026-11-15T09:00"),
        join(50, "2026-11-20T09:00", "link:old-poster", 20),
    )
    assert [e.referral for e in insights.entries(h, D, D)] == [False]


def test_the_approver_of_a_join_request_is_the_inviter() -> None:
    h = history(
        join(50, "2026-11-20T09:00", "request", 1),
        hosts=(HostChange(CHAT, 1, at("2026-11-01T08:00"), True),),
    )
    [entry] = insights.entries(h, D, D)
    assert (entry.source, entry.inviter_id, entry.referral) == ("request", 1, False)


def test_referral_audience_counts_the_baseline_from_the_tracking_day_on() -> None:
    h = history(
        join(50, "2026-11-20T09:00", "added", 777),
        baseline=10,
        start="2026-11-19T12:00",
    )
    cohort = insights.entries(h, date(2026, 11, 1), D)
    # baseline 10 from the start of 11-19 (tracking day), plus the newcomer
    assert insights.referral(h, cohort, date(2026, 11, 1), D)["audience"] == 11
    before = insights.referral(h, [], date(2026, 11, 1), date(2026, 11, 18))
    assert before == {"referred_joins": 0, "referrers": 0, "audience": 0, "rate": None}


# ---- by source: retention pooled, activation ------------------------------------------


def test_by_source_pools_retention_and_activation_and_sorts_by_joins() -> None:
    h = history(
        join(50, "2026-11-20T09:00", "link:b"),
        join(51, "2026-11-20T09:10", "link:b"),
        leave(51, "2026-11-20T09:30"),  # gone before 1h
        join(52, "2026-11-21T09:00", "link:a"),
        join(53, "2026-11-21T09:00", "link:c"),
    )
    marks = insights.Marks([mark(50, "2026-11-26T23:59"), mark(53, "2026-11-21T08:00")])
    now = at("2026-11-27T12:00")  # 11-20's window is over (11-27 00:00), 11-21's is not
    rows = insights.by_source(
        h, insights.entries(h, D, D + timedelta(days=1)), ["1h"], marks, 7, now
    )
    assert [r["source"] for r in rows] == ["link:b", "link:a", "link:c"]  # ties by key
    assert rows[0] == {
        "source": "link:b",
        "joins": 2,
        "retention": {"1h": {"retained": 1, "matured": 2, "pending": 0, "rate": 0.5}},
        "activated": {"users": 1, "matured": 2, "pending": 0, "rate": 0.5},
    }
    # 53's reply was before the join (an earlier stay): not activated; and not matured yet
    assert rows[2]["activated"] == {"users": 0, "matured": 0, "pending": 1, "rate": None}


def test_the_activation_window_ends_at_local_midnight_across_a_dst_change() -> None:
    # cohort day 2026-10-28 in New York; clocks go back on 11-01, so the window ends at
    # 11-04 00:00 EST = 05:00 UTC, 169 hours after 10-28 00:00 EDT (04:00 UTC)
    h = history(join(50, "2026-10-28T09:00", tz=NY), tz=NY, start="2026-10-01T08:00")
    cohort = insights.entries(h, date(2026, 10, 28), date(2026, 10, 28))
    late = insights.Marks([ActivityMark(CHAT, 50, Level.RESPONSE, at("2026-11-04T05:00", UTC), 1)])
    inside = insights.Marks(
        [ActivityMark(CHAT, 50, Level.RESPONSE, at("2026-11-04T04:59:59", UTC), 1)]
    )
    one_second_early = at("2026-11-04T04:59:59", UTC)
    cell = insights.activated_cell(cohort, inside, 7, NY, one_second_early)
    assert cell == insights.Cell(0, 0, 1)  # 7 × 24 h are not enough
    end = at("2026-11-04T05:00", UTC)
    assert insights.activated_cell(cohort, inside, 7, NY, end) == insights.Cell(1, 1, 0)
    assert insights.activated_cell(cohort, late, 7, NY, end) == insights.Cell(0, 1, 0)


# ---- the funnel ------------------------------------------------------------------------


def test_a_responder_who_left_before_day1_is_activated_but_stops_the_funnel_there() -> None:
    h = history(
        join(20, "2026-11-10T09:00"),
        join(50, "2026-11-20T09:00", "added", 20),  # 20 joined long before: not in the funnel
        join(60, "2026-11-20T10:00"),
        leave(60, "2026-11-21T12:00"),  # after 1h, before the end of 11-21
        join(61, "2026-11-20T11:00"),
        join(62, "2026-11-22T11:00", "added", 61),  # a referral by 61 within 61's window
        join(63, "2026-11-20T23:30"),
    )
    marks = insights.Marks(
        [
            mark(60, "2026-11-20T10:30"),
            mark(61, "2026-11-21T10:30"),
            mark(61, "2026-11-22T10:30", Level.INTERACTION),
        ]
    )
    now = at("2026-11-27T00:30")
    cohort = insights.entries(h, D, D)
    later = insights.entries(h, D + timedelta(days=1), D + timedelta(days=6))
    got = insights.funnel(
        h, cohort, insights.referrals_by_inviter([*cohort, *later]), marks, 7, now
    )
    users = {s["step"]: s["users"] for s in got["steps"]}  # type: ignore[index]
    # 50, 60, 61, 63 joined on 11-20; all windows ended at 11-27 00:00
    assert got["pending"] == 0
    assert users == {
        "joined": 4,
        "stayed_1h": 4,
        "stayed_day1": 3,  # 60 left on day 1
        "responded": 1,  # 60 responded but left: only 61
        "interacted": 1,
        "referred": 1,
    }
    shares = [s["share"] for s in got["steps"]]  # type: ignore[index]
    assert shares == [1.0, 1.0, 0.75, 0.25, 0.25, 0.25]
    # by source, 60 still counts as activated: activation needs no staying
    act = insights.activated_cell(cohort, marks, 7, SH, now)
    assert act == insights.Cell(2, 4, 0)


def test_the_funnel_waits_for_the_window_and_has_no_share_without_joiners() -> None:
    h = history(join(50, "2026-11-20T09:00"))
    got = insights.funnel(
        h, insights.entries(h, D, D), {}, insights.Marks([]), 7, at("2026-11-26T23:00")
    )
    assert got["pending"] == 1
    assert [s["share"] for s in got["steps"]] == [None] * 6  # type: ignore[index]


# ---- quiet newcomers -------------------------------------------------------------------


def test_a_quiet_newcomer_against_one_who_replied_one_promoted_and_one_gone() -> None:
    h = history(
        join(50, "2026-11-20T09:00", seq=2),
        join(51, "2026-11-20T09:00", seq=1),  # same second, arrived first
        join(52, "2026-11-20T10:00"),
        join(53, "2026-11-20T11:00"),
        join(54, "2026-11-20T12:00"),
        leave(54, "2026-11-21T12:00"),
        join(55, "2026-11-19T12:00"),  # an earlier stay with a reply, then a new cohort entry
        leave(55, "2026-11-19T13:00"),
        join(55, "2026-11-20T13:00"),
        hosts=(HostChange(CHAT, 53, at("2026-11-21T09:00"), True),),
    )
    marks = insights.Marks(
        [mark(52, "2026-11-25T09:00", Level.INTERACTION), mark(55, "2026-11-19T12:30")]
    )
    quiet = insights.quiet_newcomers(h, insights.entries(h, D, D), marks, at("2026-11-26T09:00"))
    assert [(q.user_id, q.joined_utc) for q in quiet] == [
        (51, at("2026-11-20T09:00")),
        (50, at("2026-11-20T09:00")),
        (55, at("2026-11-20T13:00")),
    ]


# ---- hours -----------------------------------------------------------------------------


def test_hours_in_a_half_hour_offset_zone() -> None:
    # Monday 2026-11-16: 18:15 UTC is 23:45 Monday in Kolkata, 18:30 UTC is 00:00 Tuesday
    got = insights.hours(
        KOLKATA,
        [(at("2026-11-16T18:15", UTC), 3), (at("2026-11-16T18:30", UTC), 5)],
        [
            (at("2026-11-16T18:20", UTC), 2),
            (at("2026-11-16T18:25", UTC), 3),
            (at("2026-11-16T18:35", UTC), 0),
        ],
    )
    assert got["messages"][0][23] == 3
    assert got["messages"][1][0] == 5
    assert sum(map(sum, got["messages"])) == 8  # type: ignore[arg-type]
    means = got["responders_per_host_post"]
    assert means[0][23] == 2.5
    assert means[1][0] == 0.0
    assert sum(m is not None for row in means for m in row) == 2  # empty cells are null
    assert len(means) == 7
    assert all(len(row) == 24 for row in means)


def test_a_repeated_dst_hour_collects_both_and_a_skipped_one_stays_empty() -> None:
    # New York, Sunday 2026-11-01: 01:30 EDT (05:30 UTC) and 01:30 EST (06:30 UTC)
    # Sunday 2026-03-08: 02:00-03:00 does not exist
    got = insights.hours(
        NY,
        [
            (at("2026-11-01T05:30", UTC), 1),
            (at("2026-11-01T06:30", UTC), 1),
            (at("2026-03-08T07:00", UTC), 4),  # 03:00 EDT
        ],
        [],
    )
    assert got["messages"][6][1] == 2
    assert got["messages"][6][2] == 0
    assert got["messages"][6][3] == 4
