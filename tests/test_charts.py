"""Charts: asserted on the figure's artists (texts, lines, bars, tick labels), not on pixels."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from bot import charts, schedule
from bot.config import Target
from bot.context import OpsApplication
from bot.service import TrendPoint
from tests import tg
from tests.botapi_server import BOT_ID, FakeBotAPI
from tests.e2e import bot_running, make_config, settle

LAST = date(2026, 12, 2)


def points(days: int, *, pending: int = 0) -> list[TrendPoint]:
    """Rates cycling 60 % .. 95 % with samples 1..days; the last `pending` days not final."""
    cycle = itertools.cycle([0.6, 0.95, 0.85, 0.7, 0.9])
    out = []
    for i in range(days):
        day = LAST - timedelta(days=days - 1 - i)
        out.append(TrendPoint(day, next(cycle), i + 1, i >= days - pending))
    return out


def by_gid(fig: Figure, gid: str) -> list[Artist]:
    return [a for a in fig.findobj() if a.get_gid() == gid]


def text_of(fig: Figure, gid: str) -> str:
    [text] = by_gid(fig, gid)
    assert isinstance(text, Text)
    return text.get_text()


@pytest.mark.parametrize(
    ("lang", "title", "target_label"),
    [("zh", "次日留存", "目标 80%"), ("en", "Next-day retention", "Target 80%")],
)
def test_title_is_the_metric_name_with_group_and_range_under_it(
    lang: str, title: str, target_label: str
) -> None:
    fig = charts.trend_figure("retention_day1", points(30), 0.8, lang, "运营一群")
    assert text_of(fig, "title") == title
    assert text_of(fig, "subtitle") == "运营一群 · 2026-11-03 – 2026-12-02"
    assert text_of(fig, "target-label") == target_label
    [line] = by_gid(fig, "target")
    assert isinstance(line, Line2D)
    assert list(line.get_ydata()) == [80, 80]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("metric", "zh", "en"),
    [
        ("retention_1h", "1小时留存", "1-hour retention"),
        ("retention_24h", "24小时留存", "24-hour retention"),
        ("retention_day7", "第7天留存", "Day-7 retention"),
        ("response_rate", "响应率", "Response rate"),
        ("interaction_rate", "互动率", "Interaction rate"),
    ],
)
def test_every_metric_has_a_localized_name(metric: str, zh: str, en: str) -> None:
    assert (charts.metric_name(metric, "zh"), charts.metric_name(metric, "en")) == (zh, en)


@pytest.mark.parametrize(
    ("metric", "label"),
    [("retention_day1", "Matured joins (n)"), ("response_rate", "Audience (n)")],
)
def test_sample_size_bars_on_a_second_axis(metric: str, label: str) -> None:
    series = points(14)
    series[3] = series[3]._replace(value=None, n=None)  # no sample that day
    fig = charts.trend_figure(metric, series, None, "en", "G")
    bars = [b for b in by_gid(fig, "sample") if isinstance(b, Rectangle)]
    assert [b.get_height() for b in bars] == [p.n or 0 for p in series]
    value_axes = fig.axes[0]
    [sample_axes] = [ax for ax in fig.axes if ax is not value_axes]
    assert sample_axes.get_ylabel() == label
    assert all(b.axes is sample_axes for b in bars)


def test_missed_days_are_red_markers_one_per_missed_final_day() -> None:
    series = points(30, pending=2)
    fig = charts.trend_figure("retention_day1", series, 0.8, "zh", "G")
    [missed] = by_gid(fig, "missed")
    assert isinstance(missed, Line2D)
    expected = [p for p in series if not p.pending and p.value is not None and p.value < 0.8]
    assert len(expected) == 11  # 0.6 and 0.7 of each five days; the pending 0.7 is not
    assert len(missed.get_xdata()) == len(expected)  # type: ignore[arg-type]
    assert [round(y) for y in missed.get_ydata()] == [  # type: ignore[union-attr]
        round(p.value * 100) for p in expected if p.value is not None
    ]
    assert missed.get_color() == charts.COLOURS["missed"]
    assert missed.get_linestyle() == "None"


def test_without_target_nothing_is_marked_missed() -> None:
    fig = charts.trend_figure("retention_day1", points(30), None, "en", "G")
    assert by_gid(fig, "missed") == by_gid(fig, "target") == by_gid(fig, "target-label") == []


def test_pending_days_are_hollow_and_dashed_apart_from_final_ones() -> None:
    series = points(10, pending=2)
    series[-1] = series[-1]._replace(value=None, n=0)  # nothing matured yet today
    fig = charts.trend_figure("retention_day1", series, 0.8, "en", "G")
    [values] = by_gid(fig, "values")
    [pending] = by_gid(fig, "pending")
    assert isinstance(values, Line2D)
    assert isinstance(pending, Line2D)
    finals = values.get_ydata()
    assert [y == y for y in finals] == [True] * 8 + [False] * 2  # type: ignore[union-attr]
    assert pending.get_linestyle() == "--"
    assert pending.get_markerfacecolor() == "white"
    # from the last final value to the pending day that has one; its marker only
    assert len(pending.get_xdata()) == 2  # type: ignore[arg-type]
    assert pending.get_markevery() == [1]
    assert len(by_gid(fig, "pending-span")) == 1
    assert "Pending (not final)" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_low_rates_get_the_height() -> None:
    series = [p._replace(value=(p.value or 0) / 4) for p in points(30)]  # 15 % .. 24 %
    fig = charts.trend_figure("response_rate", series, 0.2, "en", "G")
    assert fig.axes[0].get_ylim() == (0, pytest.approx(0.2375 * 125))
    fig = charts.trend_figure("retention_day1", points(30), 0.8, "en", "G")
    assert fig.axes[0].get_ylim() == (0, 105)


def test_pending_days_without_any_value_are_a_labelled_band() -> None:
    series = points(10, pending=2)
    series[-2:] = [p._replace(value=None, n=0) for p in series[-2:]]
    fig = charts.trend_figure("retention_day1", series, 0.8, "zh", "G")
    assert by_gid(fig, "pending") == []
    [band] = by_gid(fig, "pending-span")
    assert band.get_label() == "待定（尚未完结）"
    assert "待定（尚未完结）" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_a_chart_without_any_value_says_so() -> None:
    series = [TrendPoint(LAST - timedelta(days=i), None, 0, False) for i in range(7)]
    fig = charts.trend_figure("retention_day1", series[::-1], 0.8, "zh", "G")
    assert text_of(fig, "no-data") == "暂无数据"
    assert by_gid(fig, "missed") == []


def visible_tick_boxes(fig: Figure) -> list[Any]:
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    return [
        label.get_window_extent(renderer)
        for tick, label in zip(ax.xaxis.get_major_ticks(), ax.get_xticklabels(), strict=True)
        if label.get_text() and lo <= tick.get_loc() <= hi
    ]


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("days", [7, 14, 30, 31, 60, 90, 180, 181, 366])
def test_date_labels_never_overlap(lang: str, days: int) -> None:
    fig = charts.trend_figure("retention_day1", points(days, pending=1), 0.8, lang, "G")
    boxes = visible_tick_boxes(fig)
    assert 3 <= len(boxes) <= charts.MAX_TICKS + 1
    for a, b in itertools.pairwise(sorted(boxes, key=lambda box: box.x0)):
        assert a.x1 < b.x0, (days, lang)


def test_first_and_last_day_are_drawn_whole() -> None:
    fig = charts.trend_figure("retention_day1", points(7), 0.8, "en", "G")
    lo, hi = fig.axes[0].get_xlim()
    bars = [b for b in by_gid(fig, "sample") if isinstance(b, Rectangle)]
    assert lo < bars[0].get_x()
    assert bars[-1].get_x() + bars[-1].get_width() < hi


def test_png_bytes_are_a_phone_sized_image() -> None:
    png = charts.trend_png("retention_day1", points(30, pending=2), 0.8, "zh", "G")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1080, 630)


def test_without_cjk_font_english_titles_and_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(charts, "cjk_font", lambda: None)
    charts._warn_no_cjk.cache_clear()
    with caplog.at_level(logging.WARNING, logger="bot.charts"):
        figs = [charts.trend_figure("retention_day1", points(7), 0.8, "zh", "G") for _ in "ab"]
    assert [text_of(f, "title") for f in figs] == ["Next-day retention"] * 2
    assert text_of(figs[0], "target-label") == "Target 80%"
    warnings = [r.getMessage() for r in caplog.records if r.name == "bot.charts"]
    assert len(warnings) == 1
    assert "no CJK font" in warnings[0]
    assert "fonts-noto-cjk" in warnings[0]
    charts._warn_no_cjk.cache_clear()


# ---- through the bot: /trend and the digest's attachment pass group, range and samples ----

CHAT = -1009876
GROUP = tg.group(CHAT, "增长营")
TZ = ZoneInfo("Asia/Shanghai")
HOST, BOT_USER = tg.user(1, "Host"), tg.user(BOT_ID, "opsbot", True)


def local(days_ago: int, hour: int) -> int:
    day = datetime.now(TZ).date() - timedelta(days=days_ago)
    return int(datetime.combine(day, time(hour), TZ).timestamp())


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    server = FakeBotAPI().start()
    server.admins[CHAT] = [tg.member(HOST, "creator"), tg.member(BOT_USER, "administrator")]
    server.member_counts[CHAT] = 2
    server.chats[CHAT] = GROUP
    yield server
    server.stop()


@pytest.fixture
async def bot(api: FakeBotAPI, db_url: str, drawn: list[Figure]) -> AsyncIterator[OpsApplication]:
    config = make_config(api, db_url, targets=(Target("retention_day1", 0.8),), digest_chart=True)
    async with bot_running(config) as app:
        api.push(tg.bot_added(GROUP, HOST, local(5, 8), BOT_USER))
        users = [tg.user(100 + i, f"U{i}") for i in range(3)]
        for i, user in enumerate(users):  # three joins 4 days ago; one leaves the same day
            api.push(
                tg.chat_member(
                    GROUP,
                    user,
                    local(4, 10 + i),
                    tg.member(user, "left"),
                    tg.member(user, "member"),
                )
            )
        api.push(
            tg.chat_member(
                GROUP, users[0], local(4, 20), tg.member(users[0], "member"),
                tg.member(users[0], "left"),
            )
        )  # fmt: skip
        await settle(api)
        yield app


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    figures: list[Figure] = []
    build = charts.trend_figure

    def spy(*args: Any) -> Figure:
        figures.append(build(*args))
        return figures[-1]

    monkeypatch.setattr(charts, "trend_figure", spy)
    return figures


def command(text: str) -> dict[str, Any]:
    return tg.message(
        GROUP,
        5000,
        int(datetime.now(UTC).timestamp()),
        HOST,
        text,
        entities=[{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}],
    )


async def test_trend_command_chart_names_the_group_and_shows_samples(
    api: FakeBotAPI, bot: OpsApplication, drawn: list[Figure]
) -> None:
    api.push(command("/trend next_day 7"))
    await settle(api)
    photo = api.calls_of("sendPhoto")[-1]
    assert photo.files["photo"].startswith(b"\x89PNG")
    today = datetime.now(TZ).date()
    [fig] = charted(drawn, f"增长营 · {today - timedelta(days=6)} – {today}")
    assert text_of(fig, "title") == "次日留存"
    heights = [b.get_height() for b in by_gid(fig, "sample") if isinstance(b, Rectangle)]
    assert heights == [0, 0, 3, 0, 0, 0, 0]  # the cohort of 4 days ago: 3 matured joins
    [missed] = by_gid(fig, "missed")  # 2 of 3 stayed: 66.7 % < 80 %
    assert [round(y, 1) for y in missed.get_ydata()] == [66.7]  # type: ignore[attr-defined]
    assert photo.params["caption"] == "次日留存，最近 7 天"


def charted(figures: list[Figure], subtitle: str) -> list[Figure]:
    return [f for f in figures if text_of(f, "subtitle") == subtitle]


async def test_digest_attachment_is_the_same_chart_over_14_days(
    api: FakeBotAPI, bot: OpsApplication, drawn: list[Figure]
) -> None:
    # sent now, or already at start-up as the catch-up digest of yesterday
    await schedule.send_digest(bot, CHAT, datetime.now(UTC))
    photos = [c for c in api.calls_of("sendPhoto") if int(c.params["chat_id"]) == CHAT]
    assert len(photos) == 1
    today = datetime.now(TZ).date()
    [fig] = charted(drawn, f"增长营 · {today - timedelta(days=13)} – {today}")
    assert text_of(fig, "title") == "次日留存"
    assert text_of(fig, "target-label") == "目标 80%"
    assert len(by_gid(fig, "missed")) == 1
