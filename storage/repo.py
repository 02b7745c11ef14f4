"""The only module that writes SQL: record events, and read back what the metrics need.

Every write is idempotent (unique keys + ON CONFLICT DO NOTHING on SQLite and PostgreSQL),
so the same update delivered twice changes nothing.
"""

from __future__ import annotations

import time
from bisect import insort
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    and_,
    column,
    func,
    or_,
    select,
    tuple_,
    update,
    values,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.classify import answer_marks, reply_marks
from bot.events import (
    ActivityMark,
    HostChange,
    Level,
    MembershipEvent,
    Post,
    ReplyTarget,
    Role,
)
from storage import chats, claims, db, failed, hosts, membership, privacy, sql
from storage.chats import ChatInfo, UserTuple
from storage.membership import HistoryRows
from storage.models import (
    ActivityRow,
    MessageRow,
)
from storage.sql import chunks, from_ts, insert_for, insert_many, to_ts

KNOWN_USERS_MAX = 100_000  # per-process cache of user rows already written (memory bound)
KNOWN_USERS_TTL_S = 300  # rewritten at least this often: another process may have removed it


@dataclass
class _Batch:
    """The writes of one batch of updates: one connection, one transaction (Repo.batch)."""

    conn: AsyncConnection
    posts: list[tuple[Post, ReplyTarget | None, int]] = field(default_factory=list)
    users: dict[int, UserTuple] = field(default_factory=dict)
    membership: list[MembershipEvent] = field(default_factory=list)


class Repo:
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

    def _insert(self, table: Any) -> Any:
        return insert_for(self.dialect, table)

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
                finally:
                    self._batch.reset(token)
        except BaseException:
            self.forget_cached()
            raise

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
        posts, batch.posts = batch.posts, []
        events, batch.membership = batch.membership, []
        if users:
            await self._write_users(batch.conn, list(users.values()))
        if events:
            await membership.write_membership(batch.conn, events)
        if posts:
            await self._write_posts(batch.conn, posts)

    # ---- chats and users -------------------------------------------------------------

    async def ensure_chat(self, chat_id: int, title: str | None, type_: str) -> None:
        async with self._begin() as conn:
            await chats.ensure_chat(conn, chat_id, title, type_)

    async def chat(self, chat_id: int) -> ChatInfo | None:
        async with self._connect() as conn:
            return await chats.chat(conn, chat_id)

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
        self, chat_id: int, user_id: int, on: bool, ts_utc: datetime
    ) -> None:
        async with self._begin() as conn:
            await hosts.set_manual_host(conn, chat_id, user_id, on, ts_utc)

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
            return await self._write_posts(conn, [(post, reply, discussion_window_s)]) > 0

    async def _write_posts(
        self, conn: AsyncConnection, posts: Sequence[tuple[Post, ReplyTarget | None, int]]
    ) -> int:
        """Store posts not stored yet, in order, with the activity each causes given the
        posts before it; returns how many were new. Two reads for all groups, then
        executemany."""
        members = [
            (p, r, w) for p, r, w in posts if p.role == Role.MEMBER and p.sender_id is not None
        ]
        own = {(p.chat_id, p.message_id) for p, _, _ in posts}
        # one read: which posts are stored already, and the stored reply targets
        targets = await self._stored_targets(
            conn, own | {(p.chat_id, r.message_id) for p, r, _ in members if r is not None}
        )
        stored = own & targets.keys()
        recent = await self._answer_candidates(conn, [(p, w) for p, r, w in members if r is None])
        rows: dict[tuple[int, int], dict[str, Any]] = {}
        activity: list[dict[str, Any]] = []
        flags: dict[str, set[tuple[int, int]]] = {"is_response": set(), "is_discussion": set()}
        for post, reply, window_s in posts:
            key, ts = (post.chat_id, post.message_id), to_ts(post.ts_utc)
            if key in stored or key in rows:
                continue  # a redelivered update changes nothing
            rows[key] = message_row(post, reply)
            marks: list[ActivityMark] = []
            if post.role == Role.MEMBER and post.sender_id is not None:
                if reply is not None:
                    # the role at the time the target was sent wins over the update's view
                    target_key = (post.chat_id, reply.message_id)
                    row = rows.get(target_key)
                    target = targets.get(target_key, reply)
                    if row is not None:
                        target = ReplyTarget(
                            reply.message_id,
                            from_ts(row["ts"]),
                            Role(row["role"]),
                            row["sender_id"],
                        )
                    marks = reply_marks(post, target)
                else:
                    lo = ts - window_s
                    earlier = recent.get(post.chat_id, [])
                    marks = answer_marks(
                        post,
                        (q for q in earlier if to_ts(q.ts_utc) >= lo and _before(q, ts, key[1])),
                        window_s,
                    )
            if marks:
                flag = "is_response" if marks[0].level == Level.RESPONSE else "is_discussion"
                for m in marks:
                    activity.append(activity_row(m))
                    marked = (m.chat_id, m.message_id)
                    if marked in rows:
                        rows[marked][flag] = True
                    else:
                        flags[flag].add(marked)
            if post.role == Role.HOST or (post.role == Role.MEMBER and post.is_question):
                insort(
                    recent.setdefault(post.chat_id, []),
                    post,
                    key=lambda q: (q.ts_utc, q.message_id),
                )
        if rows:
            await insert_many(conn, MessageRow, list(rows.values()))
        if activity:
            await insert_many(conn, ActivityRow, activity)
        for flag, keys in flags.items():
            for chunk in chunks(sorted(keys)):
                await conn.execute(
                    update(MessageRow)
                    .where(tuple_(MessageRow.chat_id, MessageRow.message_id).in_(chunk))
                    .values({flag: True})
                )
        return len(rows)

    async def _stored_targets(
        self, conn: AsyncConnection, keys: set[tuple[int, int]]
    ) -> dict[tuple[int, int], ReplyTarget]:
        """Stored messages, by (chat_id, message_id), as reply targets: the role at the time
        they were sent."""
        out: dict[tuple[int, int], ReplyTarget] = {}
        for chunk in chunks(sorted(keys)):
            rows = await conn.execute(
                select(
                    MessageRow.chat_id,
                    MessageRow.message_id,
                    MessageRow.ts,
                    MessageRow.role,
                    MessageRow.sender_id,
                ).where(tuple_(MessageRow.chat_id, MessageRow.message_id).in_(chunk))
            )
            for chat_id, mid, ts, role, sender in rows:
                out[(chat_id, mid)] = ReplyTarget(mid, from_ts(ts), Role(role), sender)
        return out

    async def _answer_candidates(
        self, conn: AsyncConnection, answering: Sequence[tuple[Post, int]]
    ) -> dict[int, list[Post]]:
        """Per group, the stored host posts and member questions that posts without a reply
        may answer, in (ts, message_id) order."""
        if not answering:
            return {}
        lo = min(to_ts(p.ts_utc) - w for p, w in answering)
        hi = max(to_ts(p.ts_utc) for p, _ in answering)
        rows = await conn.execute(
            select(
                MessageRow.chat_id,
                MessageRow.message_id,
                MessageRow.ts,
                MessageRow.sender_id,
                MessageRow.role,
                MessageRow.is_question,
            )
            .where(
                MessageRow.chat_id.in_(sorted({p.chat_id for p, _ in answering})),
                MessageRow.ts >= lo,
                MessageRow.ts <= hi,
                or_(
                    MessageRow.role == Role.HOST,
                    and_(MessageRow.is_question, MessageRow.role == Role.MEMBER),
                ),
            )
            .order_by(MessageRow.chat_id, MessageRow.ts, MessageRow.message_id)
        )
        out: dict[int, list[Post]] = {}
        for chat_id, m, t, sender, role, q in rows:
            out.setdefault(chat_id, []).append(
                Post(chat_id, m, from_ts(t), Role(role), sender, is_question=q)
            )
        return out

    async def activity_marks(
        self, chat_id: int, start_utc: datetime, end_utc: datetime
    ) -> list[ActivityMark]:
        async with self._connect() as conn:
            rows = await conn.execute(
                select(
                    ActivityRow.user_id, ActivityRow.level, ActivityRow.ts, ActivityRow.message_id
                ).where(
                    ActivityRow.chat_id == chat_id,
                    ActivityRow.ts >= to_ts(start_utc),
                    ActivityRow.ts < to_ts(end_utc),
                )
            )
            return [
                ActivityMark(chat_id, u, Level(level), from_ts(ts), mid)
                for u, level, ts, mid in rows
            ]

    async def active_user_counts(
        self, chat_id: int, day_bounds: Sequence[tuple[datetime, datetime]]
    ) -> dict[tuple[int, str], int]:
        """{(day index, level): distinct active users} for consecutive local days.

        One round trip, one row per day whatever the range (a column per day would hit
        SQLite's 2,000 and PostgreSQL's 1,664 columns); each count is an index range scan
        on (chat, level, ts, user). The day bounds are integer literals, not parameters,
        so no range meets a bind-parameter limit either."""
        if not day_bounds:
            return {}
        days = (
            values(
                column("i", Integer),
                column("lo", BigInteger),
                column("hi", BigInteger),
                name="days",
                literal_binds=True,
            )
            .data([(i, to_ts(lo), to_ts(hi)) for i, (lo, hi) in enumerate(day_bounds)])
            .cte()
        )
        levels = [str(level) for level in Level]
        counts = [
            select(func.count(ActivityRow.user_id.distinct()))
            .where(
                ActivityRow.chat_id == chat_id,
                ActivityRow.level == level,
                ActivityRow.ts >= days.c.lo,
                ActivityRow.ts < days.c.hi,
            )
            .scalar_subquery()
            for level in levels
        ]
        async with self._connect() as conn:
            rows = (await conn.execute(select(days.c.i, *counts))).all()
        return {(i, level): n for i, *ns in rows for level, n in zip(levels, ns, strict=True) if n}

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
            return await chats.chat_targets(conn, chat_id)

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

    # ---- reading history -------------------------------------------------------------

    async def history(self, chat_id: int) -> HistoryRows:
        async with self._connect() as conn:
            return await membership.history(conn, chat_id)

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


def message_row(post: Post, reply: ReplyTarget | None, flag: str | None = None) -> dict[str, Any]:
    """The `messages` row of a post (flag: "is_response" or "is_discussion", if set)."""
    return {
        "chat_id": post.chat_id,
        "message_id": post.message_id,
        "ts": to_ts(post.ts_utc),
        "role": str(post.role),
        "sender_id": post.sender_id,
        "sender_chat_id": post.sender_chat_id,
        "reply_to_message_id": reply.message_id if reply else None,
        "reply_to_sender_id": reply.sender_id if reply else None,
        "is_question": post.is_question,
        "is_response": flag == "is_response",
        "is_discussion": flag == "is_discussion",
    }


def activity_row(mark: ActivityMark) -> dict[str, Any]:
    return {
        "chat_id": mark.chat_id,
        "level": str(mark.level),
        "message_id": mark.message_id,
        "user_id": mark.user_id,
        "ts": to_ts(mark.ts_utc),
    }


def _before(post: Post, ts: int, message_id: int) -> bool:
    """`post` came before the message (ts, message_id) in the chat's order."""
    own = to_ts(post.ts_utc)
    return own < ts or (own == ts and post.message_id < message_id)
