"""The facade's part for the numbers derived in bulk: what the metrics read (people and
activity counts), the growth insights' reads and the daily rollups kept as a cache of
the metrics (storage.rollups). Repo inherits it; each method runs its query in the module
that owns the tables."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from bot.events import ActivityMark
from storage import chats, people, posts, rollups, sql
from storage.people import HistoryRows


class AnalyticsReads:
    # provided by Repo: a transaction of its own or the batch's, and a connection to read
    _begin: Callable[[], AbstractAsyncContextManager[AsyncConnection]]
    _connect: Callable[[], AbstractAsyncContextManager[AsyncConnection]]

    # ---- what the metrics read ---------------------------------------------------------

    async def history(self, chat_id: int, since: datetime | None = None) -> HistoryRows:
        async with self._connect() as conn:
            since_ts = None if since is None else sql.to_ts(since)
            return await people.history(conn, chat_id, since_ts)

    async def recent_histories(self, since: dict[int, datetime]) -> dict[int, HistoryRows]:
        """Per group, the people with events from its time on (all their events)."""
        if not since:
            return {}
        async with self._connect() as conn:
            return await people.recent_histories(conn, {c: sql.to_ts(t) for c, t in since.items()})

    async def active_user_counts(
        self, chat_id: int, day_bounds: Sequence[tuple[datetime, datetime]]
    ) -> dict[tuple[int, str], int]:
        return (await self.active_user_counts_of({chat_id: day_bounds}))[chat_id]

    async def active_user_counts_of(
        self, day_bounds: dict[int, Sequence[tuple[datetime, datetime]]]
    ) -> dict[int, dict[tuple[int, str], int]]:
        """Per group, {(day index, level): distinct active users} of its local days."""
        if not any(day_bounds.values()):
            return {c: {} for c in day_bounds}
        async with self._connect() as conn:
            return await posts.active_user_counts(conn, day_bounds)

    # ---- growth insights (SPEC 12) ----------------------------------------------------

    async def newcomer_activity(
        self, chat_id: int, start_utc: datetime, end_utc: datetime
    ) -> list[ActivityMark]:
        async with self._connect() as conn:
            return await posts.newcomer_activity(conn, chat_id, start_utc, end_utc)

    async def member_message_counts(
        self, chat_id: int, start_utc: datetime, end_utc: datetime, bucket_s: int = 900
    ) -> list[tuple[datetime, int]]:
        async with self._connect() as conn:
            return await posts.member_message_counts(conn, chat_id, start_utc, end_utc, bucket_s)

    async def host_post_responders(
        self, chat_id: int, start_utc: datetime, end_utc: datetime, within_s: int
    ) -> list[tuple[datetime, int]]:
        async with self._connect() as conn:
            return await posts.host_post_responders(conn, chat_id, start_utc, end_utc, within_s)

    async def user_profiles(
        self, user_ids: Iterable[int]
    ) -> dict[int, tuple[str | None, str | None]]:
        async with self._connect() as conn:
            return await chats.user_profiles(conn, user_ids)

    # ---- daily rollups ---------------------------------------------------------------

    async def kept_days(
        self, spans: dict[int, rollups.Span]
    ) -> dict[int, dict[date, rollups.KeptDay]]:
        """Each group's kept days of [first, last] computed with its `key`, after dropping
        those that writes since the last call can have changed. A group that does not
        exist is left out (nothing can be kept for it: no row to hold its dirty mark)."""
        async with self._begin() as conn:
            found = await rollups.take_dirty(conn, list(spans))
            return await rollups.load(conn, {c: s for c, s in spans.items() if c in found})

    async def final_rollup_days(self) -> int:
        async with self._connect() as conn:
            return await rollups.final_days(conn)

    async def keep_rollups(
        self, days: Sequence[tuple[int, rollups.Key, rollups.KeptDay]], now: datetime
    ) -> None:
        """Keep (group, settings, day) as computed from raw rows (in the reader's
        transaction)."""
        if days:
            async with self._begin() as conn:
                await rollups.store(conn, days, now)
