"""`insights`: the growth numbers of a group over local days A..B (SPEC 12), as the JSON
structure `opsbot insights --json` prints. The CLI and the chat commands call it.

Rates (and shares, and means) are kept unrounded here; they are rounded when printed.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from bot import insights, metrics, service
from bot.config import Config
from storage.repo import Repo


async def insights_report(
    repo: Repo, config: Config, chat_id: int, day_from: date, day_to: date, now: datetime
) -> dict[str, object]:
    """Sources, referral, funnel, hours and quiet newcomers of cohort days A..B."""
    data = await service.load_group(repo, config, chat_id, day_from, day_to, active=False)
    h, settings = data.history, data.settings
    act_days = settings.activation_days
    # cohort entries of A..B, and the later joins that can be referrals in the funnel (up
    # to the end of the last activation window)
    today = metrics.local_day(now, h.tz)
    joins = insights.entries(
        h, day_from, max(day_to, min(day_to + timedelta(days=act_days - 1), today))
    )
    cohort = [e for e in joins if e.day <= day_to]
    lo = metrics.local_day_bounds(day_from, h.tz)[0]
    hi = metrics.local_day_bounds(day_to, h.tz)[1]
    marks = insights.Marks(await repo.newcomer_activity(chat_id, lo, hi))
    quiet = insights.quiet_newcomers(h, cohort, marks, now)
    profiles = await repo.user_profiles(q.user_id for q in quiet)
    hours = insights.hours(
        h.tz,
        await repo.member_message_counts(chat_id, lo, hi),
        await repo.host_post_responders(chat_id, lo, hi, insights.REPLY_WITHIN_S),
    )
    return {
        "chat_id": chat_id,
        "from": day_from.isoformat(),
        "to": day_to.isoformat(),
        "timezone": settings.timezone,
        "activation_days": act_days,
        "sources": insights.by_source(h, cohort, settings.windows, marks, act_days, now),
        "referral": insights.referral(h, cohort, day_from, day_to),
        "funnel": insights.funnel(
            h, cohort, insights.referrals_by_inviter(joins), marks, act_days, now
        ),
        "hours": hours,
        "quiet": [
            {
                "user_id": q.user_id,
                "name": profiles.get(q.user_id, (None, None))[0],
                "username": profiles.get(q.user_id, (None, None))[1],
                "joined": q.joined_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            for q in quiet
        ],
    }


RATE_KEYS = frozenset({"rate", "share"})


def rounded(value: object, key: str = "") -> object:
    """The report with its rates and shares rounded to 4 decimals, for printing (SPEC 8)."""
    if isinstance(value, dict):
        return {k: rounded(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, key) for v in value]
    if key in RATE_KEYS and isinstance(value, float):
        return round(value, 4)
    return value


async def sources_by_day(
    repo: Repo, config: Config, chat_id: int, days: list[date], now: datetime
) -> tuple[list[str], list[list[object]]]:
    """One row per local day and source with cohort entries (the CSV export): the day, the
    source, its joins, retained and matured at every window, activated users and matured."""
    data = await service.load_group(repo, config, chat_id, days[0], days[-1], active=False)
    h, settings = data.history, data.settings
    lo = metrics.local_day_bounds(days[0], h.tz)[0]
    hi = metrics.local_day_bounds(days[-1], h.tz)[1]
    marks = insights.Marks(await repo.newcomer_activity(chat_id, lo, hi))
    columns = ["day", "source", "joins"]
    for w in settings.windows:
        columns += [f"retained_{w}", f"matured_{w}"]
    columns += ["activated_users", "activated_matured"]
    rows: list[list[object]] = []
    for day in days:
        cohort = insights.entries(h, day, day)
        for src in insights.by_source(
            h, cohort, settings.windows, marks, settings.activation_days, now
        ):
            row: list[object] = [day.isoformat(), src["source"], src["joins"]]
            retention: Any = src["retention"]
            for w in settings.windows:
                row += [retention[w]["retained"], retention[w]["matured"]]
            activated: Any = src["activated"]
            rows.append([*row, activated["users"], activated["matured"]])
    return columns, rows
