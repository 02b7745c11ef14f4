"""Which targets are breached on a matured period (SPEC 5): pure over a group's data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from bot import metrics
from bot.config import Target
from bot.events import Level
from bot.service import GroupData, active_rate_on, range_days
from bot.service import cell as service_cell
from bot.targets import metric_window

RECENT_COHORTS = 3  # only the freshest matured cohorts are checked: no alerts about old news


@dataclass(frozen=True, slots=True)
class Breach:
    metric: str
    period: str  # cohort day, or "first..last" day range
    value: float
    target: float
    sample: int
    is_cohort: bool


def cohort_matured_at(day: date, window: metrics.Window, data: GroupData) -> datetime:
    """The moment every possible join of `day` has reached its checkpoint."""
    _, end = metrics.local_day_bounds(day, data.tz)
    if window.hours is not None:
        return end + timedelta(hours=window.hours)
    assert window.days is not None
    return metrics.local_day_bounds(day + timedelta(days=window.days), data.tz)[1]


def breaches(data: GroupData, targets: list[Target], now: datetime) -> list[Breach]:
    today = metrics.local_day(now, data.tz)
    found: list[Breach] = []
    for target in targets:
        window_name = metric_window(target.metric)
        if window_name is not None:
            found += _retention_breaches(
                data, target, metrics.parse_window(window_name), now, today
            )
        else:
            breach = _active_breach(data, target, today - timedelta(days=1))
            if breach is not None:
                found.append(breach)
    return found


def _retention_breaches(
    data: GroupData, target: Target, window: metrics.Window, now: datetime, today: date
) -> list[Breach]:
    out = []
    span = (window.days or 0) + (window.hours or 0) // 24 + RECENT_COHORTS + 1
    matured_days = [today - timedelta(days=i) for i in range(span, -1, -1)]
    matured_days = [d for d in matured_days if cohort_matured_at(d, window, data) <= now]
    for day in matured_days[-RECENT_COHORTS:]:
        cell = service_cell(data, day, window.name, now)
        if cell.rate is None or cell.matured < data.settings.min_sample:
            continue
        if cell.rate < target.value:
            out.append(
                Breach(target.metric, day.isoformat(), cell.rate, target.value, cell.matured, True)
            )
    return out


def _active_breach(data: GroupData, target: Target, last_day: date) -> Breach | None:
    if target.range and not target.range.startswith("last"):
        end = _range_end(target, data)
        if end is None or end > last_day:
            return None  # a campaign range is judged once its last day is over
    days = range_days(target.range, last_day, data.settings.campaign_start)
    if not days:
        return None
    level = Level.RESPONSE if target.metric == "response_rate" else Level.INTERACTION
    daily = [active_rate_on(data, d, level) for d in days]
    value = metrics.mean_rate([rate for _, _, rate in daily])
    audience = daily[-1][1] or 0
    if value is None or audience < data.settings.min_sample or value >= target.value:
        return None
    period = f"{days[0].isoformat()}..{days[-1].isoformat()}"
    return Breach(target.metric, period, value, target.value, audience, False)


def _range_end(target: Target, data: GroupData) -> date | None:
    if not target.range or not data.settings.campaign_start:
        return None
    b = int(target.range.split("-")[1])
    return date.fromisoformat(data.settings.campaign_start) + timedelta(days=b - 1)
