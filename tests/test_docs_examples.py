"""docs/metrics.md's worked examples, recomputed by the code the bot runs.

Each test reads an example's event table from the doc, builds those events, computes the
numbers with the pure functions of bot.metrics / bot.classify (and the alert and drift
rules), and checks that the doc states exactly those numbers. Change an example in the doc
and its test follows; change a rule in the code and the doc's example fails here.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bot import alerts, classify, metrics
from bot.config import DEFAULT_QUESTION_MARKERS, GroupSettings, Target
from bot.events import (
    ActivityMark,
    HostChange,
    Level,
    MemberKind,
    MembershipEvent,
    Post,
    ReplyTarget,
    Role,
)
from bot.reports import pct
from bot.service import GroupData, headcount_drift

DOC = (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text(encoding="utf-8")
TZ = ZoneInfo("Asia/Shanghai")
CHAT = -1001
YEAR = 2026
HOST, OPSBOT = 100, 999  # X, the host; opsbot itself
NAMES = {"X": HOST, "opsbot": OPSBOT}
ROW = re.compile(r"^\| (\d\d-\d\d \d\d:\d\d) \| (\w+) \| (.+) \|$")


def user(name: str) -> int:
    return NAMES.get(name) or ord(name) - ord("A") + 1


def section(anchor: str) -> str:
    """The doc from `<a id="anchor">` to the next anchor."""
    start = DOC.index(f'<a id="{anchor}"></a>')
    end = DOC.find("<a id=", start + 1)
    return DOC[start : end if end > 0 else None]


def at(stamp: str) -> datetime:
    """`11-20 08:00` local -> UTC."""
    return (
        datetime.strptime(f"{YEAR}-{stamp}", "%Y-%m-%d %H:%M").replace(tzinfo=TZ).astimezone(UTC)
    )


def day(md: str) -> date:
    return date.fromisoformat(f"{YEAR}-{md}")


def event_rows(anchor: str) -> list[tuple[datetime, str, str]]:
    rows = [ROW.match(line) for line in section(anchor).splitlines()]
    return [(at(m.group(1)), m.group(2), m.group(3)) for m in rows if m]


def result(anchor: str, first_cell: str) -> str:
    """The line of a results table whose first cell is `first_cell`."""
    prefix = f"| {first_cell} |"
    lines = [line for line in section(anchor).splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, f"{anchor}: no single row {prefix}"
    return lines[0]


def ratio(n: int, d: int) -> str:
    return f"{n}/{d} = {n / d * 100:.1f}%"


def membership(rows: list[tuple[datetime, str, str]]) -> list[MembershipEvent]:
    kinds = {"joins": MemberKind.JOIN, "leaves": MemberKind.LEAVE}
    return [
        MembershipEvent(CHAT, user(who), kinds[what.split()[2]], ts, seq=i)
        for i, (ts, who, what) in enumerate(rows)
        if what.split()[2] in kinds
    ]


def example1() -> metrics.GroupHistory:
    rows = event_rows("example-retention")
    assert len(rows) == 13
    return metrics.GroupHistory(
        tz=TZ,
        tracking_start_utc=at("11-01 00:00"),
        baseline_count=0,
        membership=membership(rows),
    )


def test_example1_retention_on_the_join_timeline() -> None:
    h, d = example1(), day("11-20")
    later = datetime(2030, 1, 1, tzinfo=UTC)
    members = {user(u): u for u in "ABCDEF"}
    assert [members[u] for u, _ in metrics.cohort(h, d)] == ["E", "A", "B", "F", "D", "C"]
    for window in ("1h", "day0", "24h", "day1"):
        w = metrics.parse_window(window)
        cell = metrics.retention(h, d, w, later)
        kept = sorted(
            members[u]
            for u, ts in metrics.cohort(h, d)
            if metrics.in_group_at(h, u, metrics.checkpoint(ts, w, TZ))
        )
        cells = [c.strip() for c in result("example-retention", f"`{window}`").split("|")]
        assert cells[3].split() == kept
        assert cells[4] == ratio(cell.retained, cell.matured)
        assert cell.pending == 0
    # the literal numbers, so that a doc that lost its table cannot pass
    assert metrics.retention(h, d, metrics.parse_window("day1"), later).retained == 2
    assert metrics.retention(h, d, metrics.parse_window("24h"), later).retained == 4
    # D's return on 11-21 makes that day's cohort one person
    assert [members[u] for u, _ in metrics.cohort(h, day("11-21"))] == ["D"]
    assert "makes the cohort of 11-21 one person" in section("example-retention")


def test_example2_pending_versus_matured() -> None:
    h, d, now = example1(), day("11-20"), at("11-21 10:30")
    assert "11-21 10:30" in section("example-pending")
    shown = {}
    for window in ("1h", "day0", "24h", "day1"):
        c = metrics.retention(h, d, metrics.parse_window(window), now)
        # as /retention prints a cell (bot.reports.retention_table)
        shown[window] = pct(c.rate, c.retained, c.matured) + (
            f" +{c.pending}…" if c.pending else ""
        )
        assert f"| `{window}` | {shown[window]} |" in section("example-pending")
    assert shown == {
        "1h": "83.3% (5/6)",
        "day0": "83.3% (5/6)",
        "24h": "66.7% (2/3) +3…",
        "day1": "— +6…",
    }


def test_example3_pooled_retention_and_mean_of_daily_active_rates() -> None:
    # 10 joins on day 1, one of them gone by the end of day 2; 2 joins on day 2, one gone
    d1, d2 = day("11-20"), day("11-21")
    events = [
        MembershipEvent(CHAT, u, MemberKind.JOIN, at("11-20 10:00"), seq=u) for u in range(1, 11)
    ]
    events += [MembershipEvent(CHAT, 1, MemberKind.LEAVE, at("11-21 12:00"))]
    events += [MembershipEvent(CHAT, u, MemberKind.JOIN, at("11-21 10:00")) for u in (11, 12)]
    events += [MembershipEvent(CHAT, 11, MemberKind.LEAVE, at("11-22 12:00"))]
    h = metrics.GroupHistory(TZ, at("11-01 00:00"), 0, events)
    later = datetime(2030, 1, 1, tzinfo=UTC)
    cells = [metrics.retention(h, d, metrics.parse_window("day1"), later) for d in (d1, d2)]
    assert [(c.retained, c.matured) for c in cells] == [(9, 10), (1, 2)]
    total = metrics.pooled(cells)
    mean_of_days = metrics.mean_rate([c.rate for c in cells])
    assert mean_of_days is not None
    row = result("example-pooled", "次日留存 next-day retention")
    assert (
        f"| {cells[0].retained}/{cells[0].matured} | {cells[1].retained}/{cells[1].matured} |"
        in row
    )
    assert f"pooled {ratio(total.retained, total.matured)}" in row
    assert f"mean of days {mean_of_days * 100:.1f}%" in row
    assert (total.retained, total.matured, f"{mean_of_days:.3f}") == (10, 12, "0.700")

    daily = [(20, 100), (5, 10)]
    rates = [metrics.active_rate(users, audience) for users, audience in daily]
    mean = metrics.mean_rate(rates)
    assert mean is not None
    row = result("example-pooled", "响应级活跃 response-level active")
    assert "| 20/100 | 5/10 |" in row
    assert f"mean of days {mean * 100:.1f}%" in row
    assert f"pooled {ratio(25, 110)}" in row
    assert f"{mean:.2f}" == "0.35"


def example4() -> metrics.GroupHistory:
    rows = event_rows("example-headcount")
    assert len(rows) == 4
    creator, admin, bot_admin = 201, 202, 203
    start = at("11-18 15:00")
    hosts = [HostChange(CHAT, u, start, True) for u in (creator, admin, bot_admin)]
    hosts += [
        HostChange(CHAT, user(who), ts, True) for ts, who, what in rows if "promoted" in what
    ]
    # Telegram's 105 = opsbot + creator + 2 admins (one a bot) + the members
    baseline = 105 - len({OPSBOT, creator, admin, bot_admin})
    return metrics.GroupHistory(
        tz=TZ,
        tracking_start_utc=start,
        baseline_count=baseline,
        membership=membership(rows),
        host_changes=hosts,
        bots=frozenset({OPSBOT, bot_admin}),
    )


def test_example4_baseline_headcount_audience_net_change() -> None:
    h, now = example4(), at("11-22 09:00")
    d = day("11-20")
    end_before = metrics.headcount_end(h, d - timedelta(days=1), now)
    end = metrics.headcount_end(h, d, now)
    assert end is not None
    assert end_before is not None
    got = {
        "基线 baseline": h.baseline_count,
        "11-17 当日成员 audience": metrics.audience(h, day("11-17")),
        "11-18 当日成员 audience": metrics.audience(h, day("11-18")),
        "11-20 进群 joins": metrics.joins_on(h, d),
        "11-20 退群 leaves": metrics.leaves_on(h, d),
        "11-20 当日成员 audience": metrics.audience(h, d),
        "11-20 结束时人数 head-count at the end": end,
        "11-20 净增 net change": f"{end - end_before:+d}",  # as the digest prints it
    }
    for label, value in got.items():
        shown = "—" if value is None else str(value)
        assert result("example-headcount", label) == f"| {label} | {shown} |"
    assert (end, metrics.audience(h, d), metrics.joins_on(h, d)) == (101, 103, 2)

    ours, known_not_members = metrics.headcount_at(h, at("11-21 08:00")), 4
    assert headcount_drift(ours, 114, known_not_members) == (110, 101)
    assert headcount_drift(ours, 105, known_not_members) is None
    text = section("example-headcount")
    assert "Telegram counts 114; with 4 known hosts and bots" in text
    assert "that is 110 members against opsbot's 101: 9 apart" in text
    assert "Had Telegram counted 105 (101 members), no note" in text


def _activity_marks() -> tuple[list[ActivityMark], dict[str, Post]]:
    """Example 5's messages through the same rules the live path applies."""
    rows = event_rows("example-activity")
    assert len(rows) == 11
    marks: list[ActivityMark] = []
    posts: list[Post] = []
    last_post: dict[str, Post] = {}
    window_s = GroupSettings().discussion_window_s
    for i, (ts, who, what) in enumerate(rows, start=1):
        en = what.split(" · ")[-1]
        role = Role.HOST if who == "X" else Role.MEMBER
        asks = re.fullmatch(r"asks (.+)", en)
        question = bool(asks) and classify.is_question(
            asks.group(1) if asks else "", DEFAULT_QUESTION_MARKERS
        )
        replies = re.fullmatch(r"replies to (\w+)", en)
        post = Post(CHAT, i, ts, role, user(who), is_question=question)
        if replies:
            name = replies.group(1)
            if name == "opsbot":
                target = ReplyTarget(i - 1, ts, Role.BOT, OPSBOT)
            else:
                t = last_post[name]
                target = ReplyTarget(t.message_id, t.ts_utc, t.role, t.sender_id)
            post = Post(CHAT, i, ts, role, user(who), reply_to_message_id=target.message_id)
            marks += classify.reply_marks(post, target)
        else:
            marks += classify.answer_marks(post, posts, window_s)
        posts.append(post)
        last_post[who] = post
    return marks, last_post


def test_example5_response_and_interaction_levels() -> None:
    marks, _ = _activity_marks()
    d = day("11-20")
    audience = 20
    assert "audience 20" in section("example-activity")
    names = {user(n): n for n in "ABCDEFGH"}
    for level, label in (
        (Level.RESPONSE, "响应级 response-level"),
        (Level.INTERACTION, "互动级 interaction-level"),
    ):
        who = sorted({names[m.user_id] for m in marks if m.level == level})
        n = metrics.active_users(marks, d, TZ, level)
        assert n == len(who)
        rate = metrics.active_rate(n, audience)
        assert rate is not None
        assert result("example-activity", label) == (
            f"| {label} | {' '.join(who)} | {n}/{audience} = {rate * 100:.1f}% |"
        )
    assert metrics.active_users(marks, d, TZ, Level.INTERACTION) == 4


def test_example6_question_detection() -> None:
    rows = re.findall(r"^\| `(.+)` \| (✅|❌) \|$", section("example-questions"), re.M)
    assert len(rows) == 7
    for text, mark in rows:
        assert classify.is_question(text, DEFAULT_QUESTION_MARKERS) == (mark == "✅"), text


def test_example7_alert_needs_min_sample() -> None:
    h = example1()
    target = Target("retention_day1", 0.8, None)
    now = at("11-22 00:30")
    text = section("example-alert")
    assert "fewer than `min_sample` 10: no alert" in text
    assert (
        alerts.breaches(GroupData(CHAT, GroupSettings(min_sample=10), h, {}), [target], now) == []
    )
    found = alerts.breaches(GroupData(CHAT, GroupSettings(min_sample=5), h, {}), [target], now)
    assert [(b.period, b.sample, f"{b.value * 100:.1f}%") for b in found] == [
        ("2026-11-20", 6, "33.3%")
    ]
    assert "With `min_sample = 5` there is one alert" in text
    assert "33.3% (2/6)" in text
    # not before every join of the cohort has reached its day1 checkpoint
    early = at("11-21 23:59")
    assert (
        alerts.breaches(GroupData(CHAT, GroupSettings(min_sample=5), h, {}), [target], early) == []
    )


def test_example8_which_cohort_each_digest_line_shows() -> None:
    d = day("11-21")
    assert "the digest of 11-21" in section("example-digest")
    for window in ("1h", "day0", "24h", "day1", "48h", "day7"):
        cohort = metrics.report_cohort_day(d, metrics.parse_window(window))
        assert result("example-digest", f"`{window}`") == f"| `{window}` | {cohort:%m-%d} |"
    assert metrics.report_cohort_day(d, metrics.parse_window("day1")) == day("11-20")
    assert "next-day 33.3% (2/6), in the digest of 11-21" in section("example-digest")


def test_default_question_markers_are_the_documented_ones() -> None:
    listed = "`吗`, `怎么`, `如何`, `为什么`, `为啥`, `有没有`,\n  `是否`, `how`, `why`, `what`"
    assert listed in section("questions")
    assert ", ".join(f"`{m}`" for m in DEFAULT_QUESTION_MARKERS) == listed.replace("\n  ", " ")
    assert GroupSettings().discussion_window_s == 600
    assert GroupSettings().min_sample == 10
