"""The facade's part for the numbers derived in bulk: the growth insights' reads and the
daily rollups kept as a cache of the metrics (storage.rollups). Repo inherits it; each
method runs its query in the module that owns the tables."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from bot.events import ActivityMark
from storage import chats, posts, rollups


class AnalyticsReads:
    # provided by Repo: a transaction of its own or the batch's, and a connection to read
    _begin: Callable[[], AbstractAsyncContextManager[AsyncConnection]]
    _connect: Callable[[], AbstractAsyncContextManager[AsyncConnection]]

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
        self, chat_id: int, first: date, last: date, key: rollups.Key
    ) -> dict[date, rollups.KeptDay] | None:
        """The kept days of [first, last] computed with `key`, after dropping those that
        writes since the last call can have changed; None when there is no such group
        (nothing can be kept for it: no row to hold its dirty mark)."""
        async with self._begin() as conn:
            if not await rollups.take_dirty(conn, chat_id):
                return None
            return await rollups.load(conn, chat_id, first, last, key)

    async def final_rollup_days(self) -> int:
        async with self._connect() as conn:
            return await rollups.final_days(conn)

    async def keep_rollups(
        self,
        chat_id: int,
        days: Sequence[rollups.KeptDay],
        key: rollups.Key,
        now: datetime,
    ) -> None:
        """Keep days as computed from raw rows (in the reader's transaction)."""
        if days:
            async with self._begin() as conn:
                await rollups.store(conn, chat_id, days, key, now)
