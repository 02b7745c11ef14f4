"""Trend charts (matplotlib, Agg backend) -> PNG bytes, readable on a phone."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import date
from functools import cache

import matplotlib
import matplotlib.dates

matplotlib.use("Agg")

from matplotlib import font_manager  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Source Han Sans SC",
    "Droid Sans Fallback",
    "AR PL UMing CN",
)
TITLES = {
    "zh": {
        "retention_1h": "1小时留存",
        "retention_day0": "当天留存",
        "retention_day1": "次日留存",
        "response_rate": "响应率",
        "interaction_rate": "互动率",
        "target": "目标",
    },
    "en": {"target": "target"},
}


@cache
def cjk_font() -> str | None:
    """A font with Chinese glyphs, if one is installed (else titles fall back to English)."""
    installed = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONTS if name in installed), None)


def _label(key: str, lang: str) -> str:
    if lang == "zh" and cjk_font() is None:
        lang = "en"  # never draw tofu boxes
    return TITLES.get(lang, {}).get(key, key)


def trend_png(
    metric: str, series: Sequence[tuple[date, float | None]], target: float | None, lang: str
) -> bytes:
    fig = Figure(figsize=(6.4, 3.6), dpi=150)
    font = cjk_font()
    if font:
        matplotlib.rcParams["font.sans-serif"] = [font, "DejaVu Sans"]
    ax = fig.subplots()
    days = matplotlib.dates.date2num([d for d, _ in series])  # type: ignore[no-untyped-call]
    values = [None if v is None else v * 100 for _, v in series]
    ax.plot(
        days,
        [float("nan") if v is None else v for v in values],
        marker="o",
        linewidth=2,
        markersize=3,
        color="#2a7ae2",
    )
    if target is not None:
        ax.axhline(
            target * 100,
            linestyle="--",
            color="#d33",
            linewidth=1.5,
            label=f"{_label('target', lang)} {target * 100:g}%",
        )
        ax.legend(loc="lower left", frameon=False)
    ax.set_title(_label(metric, lang), fontsize=13)
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.grid(alpha=0.3)
    ax.xaxis_date()
    fig.autofmt_xdate()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()
