"""A day's numbers -> the digest text and the retention table (one function each)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.i18n import t
from bot.targets import metric_window


def pct(rate: float | None, retained: int | None = None, matured: int | None = None) -> str:
    """`91.7% (11/12)`; `—` when nothing matured (SPEC 9)."""
    if rate is None:
        return "—"
    text = f"{rate * 100:.1f}%"
    return f"{text} ({retained}/{matured})" if matured is not None else text


def window_label(lang: str, name: str) -> str:
    """A retention window's column name: `day1` -> 次日 / next day, `day7` -> 第7天 / day 7."""
    label = t(lang, f"window_{name}")
    if label != f"window_{name}":
        return label
    if name.endswith("h") and name[:-1].isdigit():
        return t(lang, "window_hours", n=name[:-1])
    if name.startswith("day") and name[3:].isdigit():
        return t(lang, "window_days", n=name[3:])
    return name


def metric_label(lang: str, metric: str) -> str:
    """A metric's name in the group's language: `retention_day1` -> 次日留存 / Next-day
    retention; other windows by their number (`retention_day7` -> 第7天留存)."""
    label = t(lang, f"metric_{metric}")
    if label != f"metric_{metric}":
        return label
    window = metric_window(metric)
    if window is None:
        return metric
    if window.endswith("h"):
        return t(lang, "metric_retention_hours", n=window.removesuffix("h"))
    return t(lang, "metric_retention_days", n=window.removeprefix("day"))


def digest_text(
    report: Mapping[str, Any],
    lang: str,
    title: str,
    net: int | None,
    changes: Sequence[float | None] = (),
    notes: Sequence[str] = (),
    top_source: Mapping[str, Any] | None = None,
) -> str:
    head = report["headcount_end"]
    lines = [
        t(lang, "digest_title", title=title, date=report["date"]),
        t(
            lang,
            "digest_people",
            joins=report["joins"],
            leaves=report["leaves"],
            net="—" if net is None else f"{net:+d}",
            headcount="—" if head is None else head,
        ),
        "",
        t(lang, "digest_retention"),
    ]
    for name, cell in report["retention"].items():
        pending = f" {t(lang, 'pending', n=cell['pending'])}" if cell["pending"] else ""
        lines.append(
            f"  {window_label(lang, name)}: {pct(cell['rate'], cell['retained'], cell['matured'])}"
            f"{pending} · {t(lang, 'cohort_of', cohort=cell['cohort'])}"
        )
    lines.append("  " + top_source_line(top_source, lang))
    active = report["active"]
    audience = active["audience"]
    lines += ["", t(lang, "digest_active", audience="—" if audience is None else audience)]
    if audience is None:  # no audience: a day before tracking began (SPEC 9)
        lines.insert(1, t(lang, "report_before_tracking", date=report["date"]))
    for level in ("response", "interaction"):
        cell = active[level]
        lines.append(f"  {t(lang, 'digest_' + level)}: {pct(cell['rate'])} ({cell['users']})")
    lines += ["", t(lang, "digest_targets")]
    if not report["targets"]:
        lines.append("  " + t(lang, "digest_no_targets"))
    deltas = list(changes) or [None] * len(report["targets"])
    lines += [
        "  " + target_line(row, lang, d) for row, d in zip(report["targets"], deltas, strict=True)
    ]
    for note in notes:
        lines.append(f"⚠️ {note}")
    return "\n".join(lines)


def top_source_line(top: Mapping[str, Any] | None, lang: str) -> str:
    """The day's source with the most joins and its same-day retention (or none)."""
    if top is None:
        return t(lang, "digest_top_source_none")
    cell = top["day0"]
    pending = f" {t(lang, 'pending', n=cell['pending'])}" if cell["pending"] else ""
    rate = pct(cell["rate"], cell["retained"], cell["matured"])
    return t(
        lang, "digest_top_source", source=top["source"], joins=top["joins"], rate=rate + pending
    )


def retention_table(
    rows: Sequence[Mapping[str, Any]], windows: Sequence[str], lang: str, tz: str
) -> str:
    """Monospace cohort table: one row per day, then the pooled rate (SPEC 9)."""
    header = [
        t(lang, "table_day"),
        t(lang, "table_joins"),
        *(window_label(lang, w) for w in windows),
    ]
    body: list[list[str]] = []
    for row in rows:
        cells = [row["day"][5:], str(row["joins"])]
        for w in windows:
            c = row["cells"][w]
            text = pct(c["rate"], c["retained"], c["matured"])
            cells.append(text + (f" +{c['pending']}…" if c["pending"] else ""))
        body.append(cells)
    return "\n".join(
        [
            t(lang, "retention_table_title", days=len(rows), tz=tz),
            _columns([header, *body, _pooled_row(rows, windows, lang)]),
        ]
    )


def _pooled_row(rows: Sequence[Mapping[str, Any]], windows: Sequence[str], lang: str) -> list[str]:
    cells = [t(lang, "table_pooled"), str(sum(r["joins"] for r in rows))]
    for w in windows:
        retained = sum(r["cells"][w]["retained"] for r in rows)
        matured = sum(r["cells"][w]["matured"] for r in rows)
        pending = sum(r["cells"][w]["pending"] for r in rows)
        text = pct(retained / matured if matured else None, retained, matured)
        cells.append(text + (f" +{pending}…" if pending else ""))
    return cells


def _columns(table: list[list[str]]) -> str:
    widths = [max(_width(r[i]) for r in table) for i in range(len(table[0]))]
    return "\n".join(
        "  ".join(c + " " * (w - _width(c)) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in table
    )


def _width(text: str) -> int:
    """Display width: CJK characters take two columns in a monospace block."""
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def active_table(rows: Sequence[Mapping[str, Any]], lang: str, tz: str) -> str:
    header = [
        t(lang, "table_day"),
        t(lang, "active_header_audience"),
        t(lang, "active_header_response"),
        t(lang, "active_header_interaction"),
    ]
    body = [
        [
            r["day"][5:],
            "—" if r["audience"] is None else str(r["audience"]),
            pct(r["response"]["rate"]),
            pct(r["interaction"]["rate"]),
        ]
        for r in rows
    ]
    means = [t(lang, "active_mean"), ""] + [
        pct(_mean([r[level]["rate"] for r in rows])) for level in ("response", "interaction")
    ]
    return "\n".join(
        [t(lang, "active_title", days=len(rows), tz=tz), _columns([header, *body, means])]
    )


def _mean(rates: Sequence[float | None]) -> float | None:
    """Mean of the daily rates, days without a rate left out (SPEC 4)."""
    known = [r for r in rates if r is not None]
    return sum(known) / len(known) if known else None


def targets_text(
    report: Mapping[str, Any], lang: str, changes: Sequence[float | None] = ()
) -> str:
    if not report["targets"]:
        return t(lang, "no_targets")
    lines = [t(lang, "targets_title", date=report["date"])]
    deltas = list(changes) or [None] * len(report["targets"])
    lines += [target_line(row, lang, d) for row, d in zip(report["targets"], deltas, strict=True)]
    return "\n".join(lines)


def target_line(row: Mapping[str, Any], lang: str, change: float | None = None) -> str:
    """`✅ Next-day retention ≥ 80%: 88.9% ↑2.1 pp (2026-11-19)`: the change against the day
    before in percentage points."""
    mark = {True: t(lang, "met"), False: t(lang, "missed"), None: t(lang, "unknown")}[row["met"]]
    goal = f"{row['target'] * 100:.0f}%"
    trend = ""
    if change is not None:
        arrow = "↑" if change > 0 else "↓" if change < 0 else "→"
        trend = f" {arrow}{t(lang, 'pp', n=f'{abs(change) * 100:.1f}')}"
    name = metric_label(lang, row["metric"])
    return f"{mark} {name} ≥ {goal}: {pct(row['value'])}{trend} ({row['range']})"
