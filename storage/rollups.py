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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.metrics import DEFAULT_WINDOWS, DayNumbers, RetentionCell
from storage.models import Chat, DailyRollup
from storage.sql import chunks, from_ts, insert_many, to_ts

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


async def take_dirty(conn: AsyncConnection, chat_ids: Sequence[int]) -> set[int]:
    """Delete the rows the groups' dirty marks can change (horizon after them) and clear
    the marks; returns the groups that exist. Locks the groups' rows first (on PostgreSQL
    in id order): until the reader's transaction ends, no write to them can commit (each
    marks its group's row), so what it reads and keeps is one state."""
    ids = sorted(set(chat_ids))
    marks: dict[int, int | None] = {}
    for part in chunks(ids):
        if conn.dialect.name == "postgresql":
            locked = await conn.execute(
                select(Chat.chat_id, Chat.rollups_dirty_ts)
                .where(Chat.chat_id.in_(part))
                .order_by(Chat.chat_id)
                .with_for_update()
            )
        else:  # SQLite: the first write takes the database's write lock
            locked = await conn.execute(
                update(Chat)
                .where(Chat.chat_id.in_(part))
                .values(rollups_dirty_ts=Chat.rollups_dirty_ts)
                .returning(Chat.chat_id, Chat.rollups_dirty_ts)
            )
        marks.update({c: mark for c, mark in locked})
    dirty = {c: mark for c, mark in marks.items() if mark is not None}
    for c, mark in dirty.items():
        await conn.execute(
            delete(DailyRollup).where(DailyRollup.chat_id == c, DailyRollup.horizon_ts > mark)
        )
    for part in chunks(sorted(dirty)):
        await conn.execute(
            update(Chat).where(Chat.chat_id.in_(part)).values(rollups_dirty_ts=None)
        )
    return set(marks)


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


class Span(NamedTuple):
    first: date
    last: date
    key: Key


async def load(conn: AsyncConnection, spans: dict[int, Span]) -> dict[int, dict[date, KeptDay]]:
    """Each group's rows of [first, last] computed with its settings (`key`)."""
    out: dict[int, dict[date, KeptDay]] = {c: {} for c in spans}
    if not spans:
        return out
    first = min(s.first for s in spans.values()).isoformat()
    last = max(s.last for s in spans.values()).isoformat()
    for part in chunks(sorted(spans)):
        rows = await conn.execute(
            select(*_COLUMNS).where(
                DailyRollup.chat_id.in_(part),
                DailyRollup.day >= first,
                DailyRollup.day <= last,
            )
        )
        for r in rows.all():
            span = spans[r.chat_id]
            day = date.fromisoformat(r.day)
            if not span.first <= day <= span.last or (r.timezone, r.windows, r.hosts) != span.key:
                continue
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
            out[r.chat_id][day] = KeptDay(numbers, top, from_ts(r.horizon_ts), r.final)
    return out


_COLUMNS = (
    DailyRollup.chat_id,
    DailyRollup.day,
    DailyRollup.timezone,
    DailyRollup.windows,
    DailyRollup.hosts,
    DailyRollup.joins,
    DailyRollup.leaves,
    DailyRollup.headcount_end,
    DailyRollup.audience,
    DailyRollup.response_users,
    DailyRollup.interaction_users,
    DailyRollup.cells,
    DailyRollup.top_source,
    DailyRollup.horizon_ts,
    DailyRollup.final,
)


async def store(
    conn: AsyncConnection, days: Iterable[tuple[int, Key, KeptDay]], now: datetime
) -> None:
    """Keep days as computed, of groups whose rows `take_dirty` found and locked in this
    transaction; replaces rows of other settings. Each cell is final or wholly pending (the
    day's hour-window checkpoints are past)."""
    rows = []
    for chat_id, key, (n, top, horizon, final) in days:
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
