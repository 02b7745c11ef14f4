"""Daily rollups: persisted and invalidated here, derived in bot.metrics (`day_numbers`).

Every write to a group's rows min-merges the earliest event time it wrote into
`chats.rollups_dirty_ts`, in the write's own transaction (`mark_dirty`). A reader first
consumes that mark (`take_dirty`: the rows of every day the event can affect are deleted,
the mark cleared, the group's row locked until it is done), then reads the rows left, and
stores the finished days it had to compute from raw rows (`store`), in one transaction.
A row also names the timezone, windows and config hosts it was computed with; a row with
other settings is not used.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, case, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.metrics import DEFAULT_WINDOWS, DayNumbers, RetentionCell
from storage.models import Chat, DailyRollup
from storage.sql import from_ts, insert_many, to_ts

EVERYTHING = 0  # a dirty mark at the epoch: every day of the group


def dirty_from(ts: int) -> Any:
    """The value of `chats.rollups_dirty_ts` once an event at `ts` is written (min-merged)."""
    return case(
        (Chat.rollups_dirty_ts.is_(None), ts),
        (Chat.rollups_dirty_ts > ts, ts),
        else_=Chat.rollups_dirty_ts,
    )


async def mark_dirty(conn: AsyncConnection, chat_ids: Iterable[int] | None, ts: int) -> None:
    """The groups' rollups from the earliest day an event at `ts` can affect are invalid
    (all groups when `chat_ids` is None)."""
    stmt = update(Chat).values(rollups_dirty_ts=dirty_from(ts))
    if chat_ids is not None:
        ids = sorted(set(chat_ids))
        if not ids:
            return
        stmt = stmt.where(Chat.chat_id.in_(ids))
    await conn.execute(stmt)


async def take_dirty(
    conn: AsyncConnection, chat_id: int, first_day: Callable[[datetime], date]
) -> None:
    """Delete the rows the group's dirty mark covers (from `first_day(mark)` on) and clear
    the mark. Locks the group's row first: until the reader's transaction ends, no write to
    the group can commit (each marks that row), so what it reads and keeps is one state."""
    await conn.execute(
        update(Chat).where(Chat.chat_id == chat_id).values(rollups_dirty_ts=Chat.rollups_dirty_ts)
    )
    mark = (
        await conn.execute(select(Chat.rollups_dirty_ts).where(Chat.chat_id == chat_id))
    ).scalar()
    if mark is None:
        return
    start = first_day(from_ts(mark)).isoformat()
    await conn.execute(
        delete(DailyRollup).where(DailyRollup.chat_id == chat_id, DailyRollup.day >= start)
    )
    await conn.execute(update(Chat).where(Chat.chat_id == chat_id).values(rollups_dirty_ts=None))


async def drop(conn: AsyncConnection, chat_id: int) -> None:
    await conn.execute(delete(DailyRollup).where(DailyRollup.chat_id == chat_id))


Key = tuple[str, str, str]  # what a row was computed with: timezone, windows, hosts


async def load(
    conn: AsyncConnection,
    chat_id: int,
    first: date,
    last: date,
    key: Key,
) -> dict[date, DayNumbers]:
    """The rows of [first, last] computed with these settings."""
    rows = await conn.execute(
        select(DailyRollup).where(
            and_(
                DailyRollup.chat_id == chat_id,
                DailyRollup.day >= first.isoformat(),
                DailyRollup.day <= last.isoformat(),
                DailyRollup.timezone == key[0],
                DailyRollup.windows == key[1],
                DailyRollup.hosts == key[2],
            )
        )
    )
    out: dict[date, DayNumbers] = {}
    for r in rows:
        day = date.fromisoformat(r.day)
        cells = {w: RetentionCell(a, b, 0) for w, (a, b) in json.loads(r.cells).items()}
        out[day] = DayNumbers(
            day,
            r.joins,
            r.leaves,
            r.headcount_end,
            r.audience,
            r.response_users,
            r.interaction_users,
            cells,
        )
    return out


async def store(
    conn: AsyncConnection,
    chat_id: int,
    days: Iterable[DayNumbers],
    key: Key,
    now: datetime,
) -> None:
    """Keep finished days (no pending cell) as computed; replaces rows of other settings."""
    if (await conn.execute(select(Chat.chat_id).where(Chat.chat_id == chat_id))).first() is None:
        return  # no row to keep the dirty mark on (a purged group): nothing kept
    rows = []
    for n in days:
        assert all(c.pending == 0 for c in n.cells.values()), "only finished days are kept"
        row = {
            "chat_id": chat_id,
            "day": n.day.isoformat(),
            "timezone": key[0],
            "windows": key[1],
            "hosts": key[2],
            "joins": n.joins,
            "leaves": n.leaves,
            "headcount_end": n.headcount_end,
            "audience": n.audience,
            "response_users": n.response_users,
            "interaction_users": n.interaction_users,
            "cells": json.dumps({w: [c.retained, c.matured] for w, c in n.cells.items()}),
            "computed_ts": to_ts(now),
        }
        for w in DEFAULT_WINDOWS:
            row[f"retained_{w}"] = n.cells[w].retained
            row[f"matured_{w}"] = n.cells[w].matured
        rows.append(row)
    if rows:
        columns = tuple(k for k in rows[0] if k not in ("chat_id", "day"))
        await insert_many(conn, DailyRollup, rows, update_on_conflict=columns)
