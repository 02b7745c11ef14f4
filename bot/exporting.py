"""CSV exports: daily metrics, membership events and sources per day (for /export and
`opsbot export`)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import date, datetime

from bot import metrics, service
from bot.config import Config
from bot.insights_service import sources_by_day
from storage.repo import Repo

DAILY_COLUMNS = (
    "date",
    "joins",
    "leaves",
    "headcount_end",
    "audience",
    "response_users",
    "response_rate",
    "interaction_users",
    "interaction_rate",
    "retention_1h",
    "retention_day0",
    "retention_day1",
    "partial",  # "yes" on today's row: the day is not over, its numbers will still change
)
EVENT_COLUMNS = ("time_utc", "user_id", "event", "source", "invite_link")


def to_csv(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue().encode("utf-8-sig")  # the BOM lets Excel read Chinese names


async def export_files(
    repo: Repo, config: Config, chat_id: int, days: int, now: datetime
) -> dict[str, bytes]:
    """{file name: CSV bytes} for the last `days` local days since tracking began."""
    settings = await service.group_settings(repo, config, chat_id)
    daily = await service.daily_rows(repo, config, chat_id, days, now)
    start = service.day_start_utc(daily[0]["date"], settings)
    history = await repo.history(chat_id)
    today = metrics.local_day(now, settings.tz).isoformat()
    tracked = history.tracking_start_utc
    first = today if tracked is None else metrics.local_day(tracked, settings.tz).isoformat()
    daily = [
        {**row, "partial": "yes" if row["date"] == today else "no"}
        for row in daily
        if str(row["date"]) >= first
    ]
    events = [
        (e.ts_utc.isoformat(), e.user_id, str(e.kind), e.source, e.invite_link or "")
        for e in history.membership
        if e.ts_utc >= start
    ]
    shown = [date.fromisoformat(str(row["date"])) for row in daily]
    columns, sources = (
        await sources_by_day(repo, config, chat_id, shown, now) if shown else ([], [])
    )
    return {
        f"opsbot_{chat_id}_daily.csv": to_csv(
            DAILY_COLUMNS, ([r.get(c) for c in DAILY_COLUMNS] for r in daily)
        ),
        f"opsbot_{chat_id}_members.csv": to_csv(EVENT_COLUMNS, events),
        f"opsbot_{chat_id}_sources.csv": to_csv(columns, sources),
    }
