"""Daily rollups: persisted and invalidated here, derived in bot.metrics (`day_numbers`).

Every write to a group's rows min-merges the earliest event time it wrote into
`chats.rollups_dirty_ts`, in the write's own transaction (`mark_dirty`). A reader first
consumes that mark (`take_dirty`: every row whose horizon is after it is deleted, the mark
cleared, the group's row locked until it is done), then reads the rows left, and stores the
days it had to compute from raw rows (`store`), in one transaction. A row is kept once its
day is over and its hour-window checkpoints have passed; a dayN cell whose checkpoint is
still ahead is kept as wholly pending (`final` is false until none is), and the row's
horizon is the instant from which no event can change what it holds. A row also names the
timezone, windows and config hosts it was computed with; a row with other settings is not
used.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple

from sqlalchemy import and_, case, delete, func, select, update
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


@dataclass
class Marks:
    """Dirty marks gathered during a batch of writes, written once at its end."""

    since: dict[int, int] = field(default_factory=dict)  # group -> earliest change
    versions: set[int] = field(default_factory=set)  # groups whose people changed
    first_posts: dict[tuple[int, int], int] = field(default_factory=dict)  # earliest posts

    def changed(self, chat_id: int, ts: int, version: bool = False) -> None:
        self.since[chat_id] = min(self.since.get(chat_id, ts), ts)
        if version:
            self.versions.add(chat_id)

    def posted(self, chat_id: int, user_id: int, ts: int) -> None:
        key = (chat_id, user_id)
        self.first_posts[key] = min(self.first_posts.get(key, ts), ts)

    def clear(self) -> None:
        self.since.clear()
        self.versions.clear()
        self.first_posts.clear()


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


async def take_dirty(conn: AsyncConnection, chat_id: int) -> bool:
    """Delete the rows the group's dirty mark can change (horizon after it) and clear the
    mark; False when there is no such group. Locks the group's row first: until the
    reader's transaction ends, no write to the group can commit (each marks that row), so
    what it reads and keeps is one state."""
    locked = await conn.execute(
        update(Chat)
        .where(Chat.chat_id == chat_id)
        .values(rollups_dirty_ts=Chat.rollups_dirty_ts)
        .returning(Chat.rollups_dirty_ts)
    )
    row = locked.first()
    if row is None:
        return False
    mark = row[0]
    if mark is not None:
        await conn.execute(
            delete(DailyRollup).where(
                DailyRollup.chat_id == chat_id, DailyRollup.horizon_ts > mark
            )
        )
        await conn.execute(
            update(Chat).where(Chat.chat_id == chat_id).values(rollups_dirty_ts=None)
        )
    return True


async def final_days(conn: AsyncConnection) -> int:
    """How many rows are final (the days the daily_metrics view shows)."""
    count = select(func.count()).select_from(DailyRollup).where(DailyRollup.final)
    return int((await conn.execute(count)).scalar_one())


async def drop(conn: AsyncConnection, chat_id: int) -> None:
    await conn.execute(delete(DailyRollup).where(DailyRollup.chat_id == chat_id))


Key = tuple[str, str, str]  # what a row was computed with: timezone, windows, hosts
TopSource = dict[str, object] | None  # the digest's top-source line of the day


class KeptDay(NamedTuple):
    numbers: DayNumbers
    top_source: TopSource
    horizon: datetime  # no event from then on changes what the row holds
    final: bool  # the day's last checkpoint is past: no cell pending


async def load(
    conn: AsyncConnection,
    chat_id: int,
    first: date,
    last: date,
    key: Key,
) -> dict[date, KeptDay]:
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
    out: dict[date, KeptDay] = {}
    for r in rows:
        day = date.fromisoformat(r.day)
        cells = {w: RetentionCell(*c) for w, c in json.loads(r.cells).items()}
        numbers = DayNumbers(
            day,
            r.joins,
            r.leaves,
            r.headcount_end,
            r.audience,
            r.response_users,
            r.interaction_users,
            cells,
        )
        top = json.loads(r.top_source) if r.top_source is not None else None
        out[day] = KeptDay(numbers, top, from_ts(r.horizon_ts), r.final)
    return out


async def store(
    conn: AsyncConnection,
    chat_id: int,
    days: Iterable[KeptDay],
    key: Key,
    now: datetime,
) -> None:
    """Keep days as computed, for a group whose row `take_dirty` found and locked in this
    transaction; replaces rows of other settings. Each cell is final or wholly pending (the
    day's hour-window checkpoints are past)."""
    rows = []
    for n, top, horizon, final in days:
        assert all(c.pending == 0 or c.matured == c.retained == 0 for c in n.cells.values()), (
            "a kept cell is final or wholly pending"
        )
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
            "cells": json.dumps(
                {w: [c.retained, c.matured, c.pending] for w, c in n.cells.items()}
            ),
            "top_source": json.dumps(top) if top is not None else None,
            "final": final,
            "horizon_ts": to_ts(horizon),
            "computed_ts": to_ts(now),
        }
        for w in DEFAULT_WINDOWS:
            row[f"retained_{w}"] = n.cells[w].retained
            row[f"matured_{w}"] = n.cells[w].matured
        rows.append(row)
    if rows:
        columns = tuple(k for k in rows[0] if k not in ("chat_id", "day"))
        await insert_many(conn, DailyRollup, rows, update_on_conflict=columns)
