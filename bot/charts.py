"""Charts (matplotlib, Agg backend) -> PNG bytes, readable on a phone, one style for all.

Every chart starts with `new_chart` (the title block: a localized title, the group and
the date range under it; fonts and colours) and ends with `png`. `trend_figure` builds
the trend chart and returns the figure, so tests can look at its artists.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from functools import cache
from typing import TYPE_CHECKING

import matplotlib
import matplotlib.dates as mdates

matplotlib.use("Agg")

from matplotlib import font_manager  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator, PercentFormatter  # noqa: E402

from bot.i18n import t  # noqa: E402
from bot.reports import metric_label  # noqa: E402
from bot.targets import metric_window  # noqa: E402

if TYPE_CHECKING:
    from bot.service import TrendPoint

log = logging.getLogger(__name__)

CJK_FONTS = (  # Linux packages first, then what macOS ships
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Noto Sans CJK JP",  # the first face of Debian's fonts-noto-cjk collection; has hanzi
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Source Han Sans SC",
    "Droid Sans Fallback",
    "AR PL UMing CN",
    "PingFang SC",
    "Hiragino Sans GB",
    "Heiti TC",
    "STHeiti",
    "Songti SC",
    "Arial Unicode MS",
)
SIZE = (7.2, 4.2)  # inches; at 150 dpi a 1080-pixel-wide image, sharp on a phone
DPI = 150
COLOURS = {
    "line": "#2a6fdb",
    "target": "#e8590c",
    "missed": "#d62828",
    "pending": "#868e96",
    "pending-band": "#f1f3f5",
    "sample": "#ced4da",
    "text": "#212529",
    "muted": "#6c757d",
    "grid": "#dee2e6",
}
MAX_TICKS = 8  # date labels: at most this many, whatever the range (7 to 366 days)


@cache
def cjk_font() -> str | None:
    """A font with Chinese glyphs, if one is installed (else titles fall back to English)."""
    installed = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONTS if name in installed), None)


@cache
def _warn_no_cjk() -> None:
    log.warning(
        "no CJK font installed: charts use English titles "
        "(Debian/Ubuntu: apt-get install fonts-wqy-microhei or fonts-noto-cjk; macOS: "
        "Arial Unicode MS or Heiti, or brew install --cask font-noto-sans-cjk-sc)"
    )


def chart_language(lang: str) -> str:
    """The language a chart is drawn in: Chinese only with a CJK font (never tofu boxes)."""
    if lang == "zh" and cjk_font() is None:
        _warn_no_cjk()
        return "en"
    return lang if lang in ("zh", "en") else "en"


def metric_name(metric: str, lang: str) -> str:
    """次日留存 / "Next-day retention" rather than `retention_day1`."""
    return metric_label(lang, metric)


def date_range(first: date, last: date) -> str:
    return f"{first:%Y-%m-%d} – {last:%Y-%m-%d}"


@contextmanager
def _style() -> Iterator[None]:
    font = cjk_font()
    with matplotlib.rc_context(
        {
            # concrete names, not "sans-serif": a text keeps them when drawn later
            "font.family": [font, "DejaVu Sans"] if font else ["DejaVu Sans"],
            "font.size": 9,
            "axes.edgecolor": COLOURS["grid"],
            "axes.labelcolor": COLOURS["muted"],
            "xtick.color": COLOURS["muted"],
            "ytick.color": COLOURS["muted"],
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.unicode_minus": False,
        }
    ):
        yield


def new_chart(title: str, subtitle: str) -> tuple[Figure, Axes]:
    """A figure in opsbot's style with its title block; the caller draws on the axes."""
    with _style():
        fig = Figure(figsize=SIZE, dpi=DPI)
        fig.text(
            0.015,
            0.975,
            title,
            fontsize=15,
            color=COLOURS["text"],
            va="top",
            gid="title",
        )
        fig.text(
            0.015, 0.9, subtitle, fontsize=9.5, color=COLOURS["muted"], va="top", gid="subtitle"
        )
        ax = fig.add_axes((0.08, 0.2, 0.84, 0.62))
        ax.grid(axis="y", color=COLOURS["grid"], linewidth=0.8)
        ax.set_axisbelow(True)
    return fig, ax


def date_axis(ax: Axes, first: date, last: date) -> None:
    """Dates on the x axis: a limited number of labels that never overlap."""
    locator = mdates.AutoDateLocator(minticks=3, maxticks=MAX_TICKS)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    # numeric dates read the same in zh and en; months only on a long range
    fmt = "%m-%d" if (last - first).days <= 180 else "%Y-%m"
    ax.xaxis.set_major_formatter(mdates.DateFormatter(fmt))  # type: ignore[no-untyped-call]
    # half a day of room at both ends: the first and last bars and markers are whole
    start, end = mdates.date2num([first, last])  # type: ignore[no-untyped-call]
    ax.set_xlim(start - 0.5, end + 0.5)


def png(fig: Figure) -> bytes:
    with _style():
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    return buf.getvalue()


def _pct(value: float | None) -> float:
    return float("nan") if value is None else value * 100


def trend_figure(
    metric: str,
    points: Sequence[TrendPoint],
    target: float | None,
    lang: str,
    group: str,
) -> Figure:
    """The trend of one metric: the daily rate, its sample size (thin bars, right axis),
    the labelled target line, missed days in red, pending days hollow and dashed."""
    lang = chart_language(lang)
    first, last = points[0].day, points[-1].day
    fig, ax = new_chart(metric_name(metric, lang), f"{group} · {date_range(first, last)}")
    with _style():
        x = mdates.date2num([p.day for p in points])  # type: ignore[no-untyped-call]
        sample_key = (
            "chart_sample_audience" if metric_window(metric) is None else "chart_sample_joins"
        )
        bars = ax.twinx()
        bars.set_zorder(ax.get_zorder() - 1)
        ax.patch.set_visible(False)
        n = [p.n or 0 for p in points]
        bars.bar(x, n, width=0.6, color=COLOURS["sample"], label=t(lang, sample_key), gid="sample")
        bars.set_ylim(0, max(max(n), 1) * 3)  # the bars keep to the lower third
        bars.set_ylabel(t(lang, sample_key))
        bars.spines["right"].set_visible(True)
        bars.spines[["top", "left"]].set_visible(False)
        bars.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))

        # markers shrink as days get many: a year stays a readable line
        dot, line = (
            (4.0, 2.0) if len(points) <= 45 else (2.0, 1.4) if len(points) <= 120 else (0.0, 1.0)
        )
        final = [_pct(None if p.pending else p.value) for p in points]
        ax.plot(
            x,
            final,
            marker="o",
            markersize=dot,
            linewidth=line,
            color=COLOURS["line"],
            gid="values",
        )
        pending = [i for i, p in enumerate(points) if p.pending]
        if pending:
            # the dashed segment starts at the last final value before the pending days
            start = (
                pending[0] - 1
                if pending[0] > 0 and points[pending[0] - 1].value is not None
                else None
            )
            idx = ([start] if start is not None else []) + [
                i for i in pending if points[i].value is not None
            ]
            valued = any(i != start for i in idx)
            if valued:
                ax.plot(
                    [x[i] for i in idx],
                    [_pct(points[i].value) for i in idx],
                    linestyle="--",
                    marker="o",
                    markersize=dot + 1,
                    markevery=[j for j, i in enumerate(idx) if i != start],
                    markerfacecolor="white",
                    color=COLOURS["pending"],
                    linewidth=1.5,
                    label=t(lang, "chart_pending"),
                    gid="pending",
                )
            ax.axvspan(  # the legend names the band when no pending day has a value yet
                x[pending[0]] - 0.5,
                x[pending[-1]] + 0.5,
                color=COLOURS["pending-band"],
                zorder=0,
                label="_" if valued else t(lang, "chart_pending"),
                gid="pending-span",
            )
        if target is not None:
            label = t(lang, "chart_target", value=f"{target * 100:g}%")
            ax.axhline(
                target * 100, linestyle="--", color=COLOURS["target"], linewidth=1.2, gid="target"
            )
            ax.annotate(
                label,
                (1, target * 100),
                xycoords=("axes fraction", "data"),
                xytext=(-2, 3),
                textcoords="offset points",
                ha="right",
                va="bottom",
                color=COLOURS["target"],
                fontsize=8.5,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
                gid="target-label",
            )
            missed = [
                p for p in points if not p.pending and p.value is not None and p.value < target
            ]
            if missed:
                ax.plot(
                    mdates.date2num([p.day for p in missed]),  # type: ignore[no-untyped-call]
                    [_pct(p.value) for p in missed],
                    linestyle="none",
                    marker="o",
                    markersize=dot + 3,
                    color=COLOURS["missed"],
                    zorder=3,
                    label=t(lang, "chart_missed"),
                    gid="missed",
                )
        if all(p.value is None for p in points):
            _no_data(ax, lang, 0.55)
        # low rates (active members are often 10-30 %) get the height, not an empty top
        highest = max([p.value for p in points if p.value is not None] + [target or 0])
        ax.set_ylim(0, min(105, max(10, highest * 100 * 1.25)))
        ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
        date_axis(ax, first, last)
        handles, labels = ax.get_legend_handles_labels()
        bar_handles, bar_labels = bars.get_legend_handles_labels()
        fig.legend(
            handles + bar_handles,
            labels + bar_labels,
            loc="lower center",
            ncol=4,
            frameon=False,
            fontsize=8,
            bbox_to_anchor=(0.5, 0.0),
        )
    return fig


def trend_png(
    metric: str,
    points: Sequence[TrendPoint],
    target: float | None,
    lang: str,
    group: str,
) -> bytes:
    return png(trend_figure(metric, points, target, lang, group))


HEAT = "Blues"  # the heat-map's colour map: white (no messages) to the line colour


def hours_figure(
    messages: Sequence[Sequence[int]], lang: str, group: str, first: date, last: date
) -> Figure:
    """Member messages by local weekday (rows, Monday first) and hour (columns), each
    cell shaded by its count and labelled with it when not zero."""
    lang = chart_language(lang)
    fig, ax = new_chart(t(lang, "hours_chart_title"), f"{group} · {date_range(first, last)}")
    with _style():
        ax.grid(False)
        ax.spines[["left", "bottom"]].set_visible(False)
        top = max((n for row in messages for n in row), default=0)
        image = ax.imshow(
            [list(row) for row in messages],
            cmap=HEAT,
            vmin=0,
            vmax=max(top, 1),
            aspect="auto",
            gid="cells",
        )
        for d, row in enumerate(messages):
            for h, n in enumerate(row):
                if n:
                    ax.text(
                        h,
                        d,
                        str(n),
                        ha="center",
                        va="center",
                        fontsize=5.5,
                        color="white" if n > top * 0.6 else COLOURS["text"],
                        gid="cell-value",
                    )
        ax.set_yticks(range(7), t(lang, "insights_weekdays").split())
        ax.set_xticks(range(0, 24, 2), [f"{h:02d}" for h in range(0, 24, 2)])
        ax.tick_params(length=0)
        ax.set_xlabel(t(lang, "hours_chart_hour"))
        bar = fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02)
        bar.set_label(t(lang, "hours_chart_count"))
        bar.ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))  # whole messages
        bar.outline.set_visible(False)
    return fig


def funnel_figure(
    steps: Sequence[tuple[str, int, float | None]],
    pending: int,
    lang: str,
    group: str,
    first: date,
    last: date,
) -> Figure:
    """The newcomer funnel: one bar per step (label, users, share of `joined`), widest
    first, each labelled with its users and share."""
    lang = chart_language(lang)
    fig, ax = new_chart(t(lang, "funnel_chart_title"), f"{group} · {date_range(first, last)}")
    with _style():
        ax.set_position((0.2, 0.14, 0.76, 0.68))  # room for the step names on the left
        ax.grid(False)
        ax.grid(axis="x", color=COLOURS["grid"], linewidth=0.8)
        rows = list(range(len(steps)))
        users = [n for _, n, _ in steps]
        ax.barh(rows, users, height=0.6, color=COLOURS["line"], gid="steps")
        ax.set_yticks(rows, [label for label, _, _ in steps])
        ax.invert_yaxis()  # the first step on top
        widest = max(users, default=0)
        ax.set_xlim(0, max(widest, 1) * 1.25)  # room for the labels right of the bars
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for row, (_, n, share) in zip(rows, steps, strict=True):
            text = f"{n}" if share is None else f"{n} ({share * 100:.1f}%)"
            ax.annotate(
                text,
                (n, row),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                color=COLOURS["text"],
                fontsize=9,
                gid="step-value",
            )
        if pending:
            fig.text(
                0.015,
                0.03,
                t(lang, "funnel_chart_pending", n=pending),
                fontsize=8.5,
                color=COLOURS["muted"],
                gid="pending",
            )
        if not widest:
            _no_data(ax, lang, 0.5)
    return fig


def _no_data(ax: Axes, lang: str, y: float) -> None:
    """The note on a chart with nothing to draw yet."""
    ax.text(
        0.5,
        y,
        t(lang, "chart_no_data"),
        transform=ax.transAxes,
        ha="center",
        color=COLOURS["muted"],
        fontsize=12,
        gid="no-data",
    )
