"""The storage facade the bot uses: one engine, transactions and batches, the per-process
caches, and one method per query, each run by the module that owns its tables:

- storage.chats: groups, settings, targets, tracking, migration, user names, bot state
- storage.membership: joins and leaves, member counts
- storage.people: a group's people as the metrics read them (of many groups at once)
- storage.hosts: admin status changes and manual hosts
- storage.posts: posts and the activity they cause
- storage.claims: exactly-once sending of digests and alerts
- storage.privacy: /forgetme, /purge, retention
- storage.failed: the dead-letter table
- storage.analytics: the facade's part for the metrics' reads, growth insights and daily
  rollups
- storage.sql: helpers they share (storage.bulk is the importer's batched writer)

No SQL outside storage/. Every write is idempotent (unique keys + ON CONFLICT DO NOTHING
on SQLite and PostgreSQL), so the same update delivered twice changes nothing.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.events import (
    ActivityMark,
    HostChange,
    MembershipEvent,
    Post,
    ReplyTarget,
)
from storage import chats, claims, db, failed, hosts, membership, posts, privacy, rollups, sql
from storage.analytics import AnalyticsReads
from storage.chats import ChatInfo, UserTuple

KNOWN_USERS_MAX = 100_000  # per-process cache of user rows already written (memory bound)
KNOWN_USERS_TTL_S = 300  # rewritten at least this often: another process may have removed it


@dataclass
class _Batch:
    """The writes of one batch of updates: one connection, one transaction (Repo.batch)."""

    conn: AsyncConnection
    posts: list[tuple[Post, ReplyTarget | None, int]] = field(default_factory=list)
    users: dict[int, UserTuple] = field(default_factory=dict)
    membership: list[MembershipEvent] = field(default_factory=list)
    marks: rollups.Marks = field(default_factory=rollups.Marks)  # written at the end


class Repo(AnalyticsReads):
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        # what readers derived from a group's rows, keyed by its data_version (see Chat)
        self.memo: OrderedDict[Any, Any] = OrderedDict()
        # the batch the current task writes into, if any (per Repo: tests open several)
        self._batch: ContextVar[_Batch | None] = ContextVar(f"batch-{id(self)}", default=None)
        # user rows this process has written, as written: the same again is not rewritten
        self._known_users: dict[int, tuple[UserTuple, float]] = {}

    @classmethod
    async def open(cls, url: str, *, upgrade: bool = True) -> Repo:
        engine = db.make_engine(url)
        if upgrade:
            await db.upgrade(engine)
        return cls(engine)

    async def close(self) -> None:
        await self.engine.dispose()

    # ---- transactions and batches ----------------------------------------------------

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        """Every write inside (in this task) goes into one transaction, committed at the end:
        all or nothing. Posts, joins/leaves and user rows are buffered and written with
        executemany at the end, or before any other statement, so statements keep their order."""
        if self._batch.get() is not None:
            yield
            return
        try:
            async with self.engine.begin() as conn:
                batch = _Batch(conn)
                token = self._batch.set(batch)
                try:
                    yield
                    await self._flush(batch)
                    await posts.write_marks(conn, batch.marks)
                finally:
                    self._batch.reset(token)
        except BaseException:
            self.forget_cached()
            raise

    async def write_marks(self) -> None:
        """Inside a batch, the rollups' dirty marks gathered so far, written: a reader of
        the marks (or of data versions) in the batch sees its own writes."""
        batch = self._batch.get()
        if batch is not None:
            await self._flush(batch)
            await posts.write_marks(batch.conn, batch.marks)

    def forget_cached(self) -> None:
        """Drop what this process remembers of written rows (after a rolled-back batch)."""
        self._known_users.clear()
        self.memo.clear()

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        """A transaction of its own, or the current batch's (pending rows written first)."""
        batch = self._batch.get()
        if batch is None:
            async with self.engine.begin() as conn:
                yield conn
        else:
            await self._flush(batch)
            yield batch.conn

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection to read with; inside a batch its own, which sees the batch's rows."""
        batch = self._batch.get()
        if batch is None:
            async with self.engine.connect() as conn:
                yield conn
        else:
            await self._flush(batch)
            yield batch.conn

    async def _flush(self, batch: _Batch) -> None:
        users, batch.users = batch.users, {}
        pending, batch.posts = batch.posts, []
        events, batch.membership = batch.membership, []
        if users:
            await self._write_users(batch.conn, list(users.values()))
        if events:
            await membership.write_membership(batch.conn, events, batch.marks)
        if pending:
            await posts.write_posts(batch.conn, pending, batch.marks)

    # ---- chats and users -------------------------------------------------------------

    async def ensure_chat(self, chat_id: int, title: str | None, type_: str) -> None:
        async with self._begin() as conn:
            await chats.ensure_chat(conn, chat_id, title, type_)

    async def chat(self, chat_id: int) -> ChatInfo | None:
        async with self._connect() as conn:
            return await chats.chat(conn, chat_id)

    async def chats(self, chat_ids: Sequence[int]) -> dict[int, ChatInfo]:
        async with self._connect() as conn:
            return await chats.chats(conn, chat_ids)

    async def chat_ids(self, *, active_only: bool = True) -> list[int]:
        async with self._connect() as conn:
            return await chats.chat_ids(conn, active_only=active_only)

    async def update_chat(self, chat_id: int, **values: Any) -> None:
        async with self._begin() as conn:
            await chats.update_chat(conn, chat_id, **values)

    async def start_tracking(self, chat_id: int, ts_utc: datetime, baseline_count: int) -> bool:
        async with self._begin() as conn:
            return await chats.start_tracking(conn, chat_id, ts_utc, baseline_count)

    async def record_member_count(self, chat_id: int, ts_utc: datetime, count: int) -> None:
        async with self._begin() as conn:
            await membership.record_member_count(conn, chat_id, ts_utc, count)

    async def record_users(self, users: Iterable[UserTuple]) -> None:
        """(user_id, is_bot, first_name, username); names kept for host lists and imports.
        A user row this process already wrote, unchanged, is not written again."""
        now = time.monotonic()
        fresh = {
            u[0]: u
            for u in users
            if (hit := self._known_users.get(u[0])) is None
            or hit[0] != u
            or now - hit[1] > KNOWN_USERS_TTL_S
        }
        if not fresh:
            return
        batch = self._batch.get()
        if batch is not None:
            batch.users.update(fresh)
            return
        try:
            async with self._begin() as conn:
                await self._write_users(conn, list(fresh.values()))
        except BaseException:
            for user_id in fresh:
                self._known_users.pop(user_id, None)
            raise

    async def _write_users(self, conn: AsyncConnection, users: list[UserTuple]) -> None:
        await chats.write_users(conn, users)
        if len(self._known_users) + len(users) > KNOWN_USERS_MAX:
            self._known_users.clear()
        # remembered before the commit: a failed commit clears the cache (batch, forget_cached)
        now = time.monotonic()
        self._known_users.update((u[0], (u, now)) for u in users)

    async def user_names(self, user_ids: Iterable[int]) -> dict[int, str]:
        async with self._connect() as conn:
            return await chats.user_names(conn, user_ids)

    # ---- membership ------------------------------------------------------------------

    async def record_membership(self, ev: MembershipEvent) -> bool:
        """Store a join/leave unless the same one was seen from another source (SPEC 2).
        Inside a batch the event is written with the batch's others (and True returned)."""
        batch = self._batch.get()
        if batch is not None:
            batch.membership.append(ev)
            return True
        async with self._begin() as conn:
            return await membership.write_membership(conn, [ev]) > 0

    # ---- hosts -----------------------------------------------------------------------

    async def admin_hosts(self, chat_id: int) -> set[int]:
        async with self._connect() as conn:
            return await hosts.admin_hosts(conn, chat_id)

    async def set_host(self, change: HostChange) -> bool:
        async with self._begin() as conn:
            return await hosts.set_host(conn, change)

    async def sync_admins(self, chat_id: int, admin_ids: set[int], ts_utc: datetime) -> None:
        async with self._begin() as conn:
            await hosts.sync_admins(conn, chat_id, admin_ids, ts_utc)

    async def manual_hosts(self, chat_id: int) -> set[int]:
        async with self._connect() as conn:
            return await hosts.manual_hosts(conn, chat_id)

    async def set_manual_host(
        self, chat_id: int, user_id: int, on: bool, ts_utc: datetime, in_baseline: bool = False
    ) -> None:
        async with self._begin() as conn:
            await hosts.set_manual_host(conn, chat_id, user_id, on, ts_utc, in_baseline)

    async def joined_since_tracking(self, chat_id: int, user_id: int) -> bool:
        async with self._connect() as conn:
            return await membership.joined_since_tracking(conn, chat_id, user_id)

    # ---- posts and activity ----------------------------------------------------------

    async def record_post(
        self, post: Post, reply: ReplyTarget | None, discussion_window_s: int
    ) -> bool:
        """Store a post and the activity it causes (SPEC 4); False if already stored.
        Inside a batch the post is written with the batch's others (and True returned)."""
        batch = self._batch.get()
        if batch is not None:
            batch.posts.append((post, reply, discussion_window_s))
            return True
        async with self._begin() as conn:
            return await posts.write_posts(conn, [(post, reply, discussion_window_s)]) > 0

    async def activity_marks(
        self, chat_id: int, start_utc: datetime, end_utc: datetime
    ) -> list[ActivityMark]:
        async with self._connect() as conn:
            return await posts.activity_marks(conn, chat_id, start_utc, end_utc)

    # ---- migration -------------------------------------------------------------------

    async def migrate_chat(self, old_id: int, new_id: int) -> bool:
        async with self._begin() as conn:
            return await chats.migrate_chat(conn, old_id, new_id)

    async def resolve_chat_id(self, chat_id: int) -> int:
        async with self._connect() as conn:
            return await chats.resolve_chat_id(conn, chat_id)

    # ---- targets set in chat ----------------------------------------------------------

    async def chat_targets(self, chat_id: int) -> dict[str, tuple[float | None, str | None]]:
        async with self._connect() as conn:
            return (await chats.chat_targets(conn, [chat_id]))[chat_id]

    async def chat_targets_of(
        self, chat_ids: Sequence[int]
    ) -> dict[int, dict[str, tuple[float | None, str | None]]]:
        async with self._connect() as conn:
            return await chats.chat_targets(conn, chat_ids)

    async def set_chat_target(
        self,
        chat_id: int,
        metric: str,
        value: float | None,
        rng: str | None,
        by: int,
        ts_utc: datetime,
    ) -> None:
        async with self._begin() as conn:
            await chats.set_chat_target(conn, chat_id, metric, value, rng, by, ts_utc)

    async def chat_periods(
        self,
    ) -> list[tuple[int, str | None, datetime | None, datetime | None, int]]:
        async with self._connect() as conn:
            return await chats.chat_periods(conn)

    # ---- exactly-once sending -------------------------------------------------------

    async def claim(
        self,
        chat_id: int,
        kind: str,
        metric: str,
        period: str,
        owner: str,
        now: datetime,
        lease_s: int = 300,
    ) -> bool:
        async with self._begin() as conn:
            return await claims.claim(conn, chat_id, kind, metric, period, owner, now, lease_s)

    async def finish_claim(
        self, chat_id: int, kind: str, metric: str, period: str, now: datetime, *, sent: bool
    ) -> None:
        async with self._begin() as conn:
            await claims.finish_claim(conn, chat_id, kind, metric, period, now, sent=sent)

    # ---- privacy ---------------------------------------------------------------------

    async def forget_user(self, user_id: int) -> int:
        self._known_users.pop(user_id, None)
        async with self._begin() as conn:
            return await privacy.forget_user(conn, user_id)

    async def purge_chat(self, chat_id: int) -> None:
        async with self._begin() as conn:
            await privacy.purge_chat(conn, chat_id)
        # a group tracked afresh counts its data versions from 0 again: nothing derived from
        # the old rows may be taken for the new ones
        self.memo.clear()

    async def drop_old_messages(self, before_utc: datetime) -> int:
        async with self._begin() as conn:
            return await privacy.drop_old_messages(conn, before_utc)

    # ---- update offset -------------------------------------------------------------

    async def get_state(self, key: str) -> int | None:
        async with self._connect() as conn:
            return await chats.get_state(conn, key)

    async def set_state(self, key: str, value: int) -> None:
        async with self._begin() as conn:
            await chats.set_state(conn, key, value)

    # ---- dead-letter table -----------------------------------------------------------

    async def record_failed_updates(
        self, failures: Sequence[tuple[int, str, str]], ts: int
    ) -> None:
        if failures:
            async with self._begin() as conn:
                await failed.record_failed_updates(conn, failures, ts)

    async def failed_updates(self) -> list[tuple[int, int, str, str]]:
        async with self._connect() as conn:
            return await failed.failed_updates(conn)

    async def counts(self) -> dict[str, int]:
        """Row counts per table (for tests and `opsbot db status`)."""
        async with self._connect() as conn:
            return await sql.counts(conn)
