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
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    Table,
    and_,
    bindparam,
    column,
    delete,
    func,
    literal_column,
    or_,
    select,
    tuple_,
    update,
    values,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.classify import answer_marks, reply_marks
from bot.events import (
    ActivityMark,
    HostChange,
    Level,
    MemberKind,
    MembershipEvent,
    Post,
    ReplyTarget,
    Role,
)
from storage import db
from storage.models import (
    FAILED_NAME_MAX,
    ActivityRow,
    Base,
    BotState,
    Chat,
    ChatTarget,
    Claim,
    FailedUpdate,
    HostEventRow,
    ManualHost,
    MemberCount,
    MembershipEventRow,
    MessageRow,
    User,
)

DEDUP_WINDOW_S = 60  # SPEC 2: the same join/leave seen from two sources within 60 s
KNOWN_USERS_MAX = 100_000  # per-process cache of user rows already written (memory bound)
KNOWN_USERS_TTL_S = 300  # rewritten at least this often: another process may have removed it


def to_ts(dt: datetime) -> int:
    return int(dt.timestamp())


def from_ts(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@dataclass(frozen=True, slots=True)
class ChatInfo:
    chat_id: int
    title: str | None
    type: str
    linked_chat_id: int | None
    tracking_start_utc: datetime | None
    baseline_count: int
    bot_status: str | None
    bot_is_admin: bool
    migrated_to_chat_id: int | None
    timezone: str | None
    language: str | None
    digest_time: str | None
    digest_to: str | None
    data_version: int = 0


@dataclass(frozen=True, slots=True)
class HistoryRows:
    """Everything the metrics need about one group's people, as our own types."""

    tracking_start_utc: datetime | None
    baseline_count: int
    membership: list[MembershipEvent]
    host_changes: list[HostChange]
    bots: frozenset[int]
    manual_hosts: frozenset[int]
    first_post_utc: dict[int, datetime]


UserTuple = tuple[int, bool, str | None, str | None]  # user_id, is_bot, first_name, username


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
        self._compiled: dict[Any, tuple[str, list[str]]] = {}

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

    async def _insert_many(
        self,
        conn: AsyncConnection,
        model: Any,
        rows: Sequence[dict[str, Any]],
        update_on_conflict: tuple[str, ...] = (),
    ) -> None:
        """INSERT … ON CONFLICT DO NOTHING (or DO UPDATE of the columns named, keyed by the
        primary key) as an executemany at the driver, rows as tuples: SQLAlchemy's per-row
        parameter handling costs more than SQLite's insert itself. Compiled once."""
        key = (model, tuple(rows[0]), update_on_conflict)
        compiled = self._compiled.get(key)
        if compiled is None:
            stmt = self._insert(model)
            if update_on_conflict:
                stmt = stmt.on_conflict_do_update(
                    index_elements=[c.name for c in model.__table__.primary_key],
                    set_={name: stmt.excluded[name] for name in update_on_conflict},
                )
            else:
                stmt = stmt.on_conflict_do_nothing()
            done = stmt.values({name: bindparam(name) for name in rows[0]}).compile(
                dialect=self.engine.dialect
            )
            compiled = self._compiled[key] = (str(done), list(done.positiontup or ()))
        sql, names = compiled
        await conn.exec_driver_sql(sql, [tuple(row[n] for n in names) for row in rows])

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
        membership, batch.membership = batch.membership, []
        if users:
            await self._write_users(batch.conn, list(users.values()))
        if membership:
            await self._write_membership(batch.conn, membership)
        if posts:
            await self._write_posts(batch.conn, posts)

    # ---- chats and users -------------------------------------------------------------

    async def ensure_chat(self, chat_id: int, title: str | None, type_: str) -> None:
        async with self._begin() as conn:
            await conn.execute(
                self._insert(Chat)
                .values(
                    chat_id=chat_id, title=title, type=type_, baseline_count=0, bot_is_admin=False
                )
                .on_conflict_do_nothing(index_elements=["chat_id"])
            )
            if title is not None:
                await conn.execute(
                    update(Chat)
                    .where(Chat.chat_id == chat_id, or_(Chat.title.is_(None), Chat.title != title))
                    .values(title=title, type=type_)
                )

    async def chat(self, chat_id: int) -> ChatInfo | None:
        async with self._connect() as conn:
            row = (await conn.execute(select(Chat).where(Chat.chat_id == chat_id))).first()
        if row is None:
            return None
        m = row._mapping
        start = m["tracking_start_ts"]
        return ChatInfo(
            chat_id=m["chat_id"],
            title=m["title"],
            type=m["type"],
            linked_chat_id=m["linked_chat_id"],
            tracking_start_utc=from_ts(start) if start is not None else None,
            baseline_count=m["baseline_count"],
            bot_status=m["bot_status"],
            bot_is_admin=m["bot_is_admin"],
            migrated_to_chat_id=m["migrated_to_chat_id"],
            timezone=m["timezone"],
            language=m["language"],
            digest_time=m["digest_time"],
            digest_to=m["digest_to"],
            data_version=m["data_version"] or 0,
        )

    async def chat_ids(self, *, active_only: bool = True) -> list[int]:
        stmt = select(Chat.chat_id).where(Chat.migrated_to_chat_id.is_(None))
        if active_only:
            stmt = stmt.where(Chat.bot_status.in_(("member", "administrator")))
        async with self._connect() as conn:
            return list((await conn.execute(stmt.order_by(Chat.chat_id))).scalars())

    async def update_chat(self, chat_id: int, **values: Any) -> None:
        async with self._begin() as conn:
            await conn.execute(update(Chat).where(Chat.chat_id == chat_id).values(**values))

    async def start_tracking(self, chat_id: int, ts_utc: datetime, baseline_count: int) -> bool:
        """Anchor the baseline once (SPEC 9); later calls change nothing."""
        async with self._begin() as conn:
            result = await conn.execute(
                update(Chat)
                .where(Chat.chat_id == chat_id, Chat.tracking_start_ts.is_(None))
                .values(tracking_start_ts=to_ts(ts_utc), baseline_count=baseline_count)
            )
            await self._bump(conn, chat_id)
            await conn.execute(
                self._insert(MemberCount).values(
                    chat_id=chat_id, ts=to_ts(ts_utc), count=baseline_count
                )
            )
            return bool(result.rowcount)

    async def record_member_count(self, chat_id: int, ts_utc: datetime, count: int) -> None:
        async with self._begin() as conn:
            await conn.execute(
                self._insert(MemberCount).values(chat_id=chat_id, ts=to_ts(ts_utc), count=count)
            )

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
        await self._insert_many(
            conn,
            User,
            [{"user_id": u, "is_bot": b, "first_name": f, "username": n} for u, b, f, n in users],
            update_on_conflict=("first_name", "username"),
        )
        if len(self._known_users) + len(users) > KNOWN_USERS_MAX:
            self._known_users.clear()
        # remembered before the commit: a failed commit clears the cache (batch, forget_cached)
        now = time.monotonic()
        self._known_users.update((u[0], (u, now)) for u in users)

    async def user_names(self, user_ids: Iterable[int]) -> dict[int, str]:
        """First name (or @username) of known users, for host lists."""
        ids = list(user_ids)
        async with self._connect() as conn:
            rows = await conn.execute(
                select(User.user_id, User.first_name, User.username).where(User.user_id.in_(ids))
            )
            return {u: f or (f"@{n}" if n else str(u)) for u, f, n in rows}

    # ---- membership ------------------------------------------------------------------

    async def record_membership(self, ev: MembershipEvent) -> bool:
        """Store a join/leave unless the same one was seen from another source (SPEC 2).
        Inside a batch the event is written with the batch's others (and True returned)."""
        batch = self._batch.get()
        if batch is not None:
            batch.membership.append(ev)
            return True
        async with self._begin() as conn:
            return await self._write_membership(conn, [ev]) > 0

    async def _write_membership(
        self, conn: AsyncConnection, events: Sequence[MembershipEvent]
    ) -> int:
        """Store the events that are not duplicates of stored ones or of each other, in
        order; returns how many were new. One read for all groups, then executemany."""
        times = [to_ts(ev.ts_utc) for ev in events]
        near: dict[tuple[int, int], list[tuple[str, int]]] = {}
        poorer: dict[tuple[int, int, int], int | dict[str, Any]] = {}  # joins not via chat_member
        for chunk in _chunks(sorted({(ev.chat_id, ev.user_id) for ev in events})):
            rows = await conn.execute(
                select(
                    MembershipEventRow.chat_id,
                    MembershipEventRow.user_id,
                    MembershipEventRow.kind,
                    MembershipEventRow.ts,
                    MembershipEventRow.id,
                    MembershipEventRow.source,
                ).where(
                    tuple_(MembershipEventRow.chat_id, MembershipEventRow.user_id).in_(chunk),
                    MembershipEventRow.ts.between(
                        min(times) - DEDUP_WINDOW_S, max(times) + DEDUP_WINDOW_S
                    ),
                )
            )
            for chat_id, user_id, kind, ts, row_id, source in rows:
                near.setdefault((chat_id, user_id), []).append((kind, ts))
                if kind == MemberKind.JOIN and source != "chat_member":
                    poorer[(chat_id, user_id, ts)] = row_id
        new = []
        richer: list[tuple[int, dict[str, Any]]] = []
        for ev, ts in zip(events, times, strict=True):
            seen = near.setdefault((ev.chat_id, ev.user_id), [])
            around = [(k, t) for k, t in seen if abs(t - ts) <= DEDUP_WINDOW_S]
            if is_duplicate(ev.kind, ts, around):
                if ev.kind == MemberKind.JOIN and ev.source == "chat_member":
                    _keep_richer(ev, ts, around, poorer, richer)
                continue
            seen.append((str(ev.kind), ts))
            row = membership_row(ev)
            new.append(row)
            if ev.kind == MemberKind.JOIN and ev.source != "chat_member":
                poorer[(ev.chat_id, ev.user_id, ts)] = row
        for row_id, better in richer:
            await conn.execute(
                update(MembershipEventRow).where(MembershipEventRow.id == row_id).values(**better)
            )
        if richer:
            await self._bump(conn, *{ev.chat_id for ev in events})
        if not new:
            return 0
        if len(new) == 1:  # rowcount tells whether another process stored it first
            stmt = self._insert(MembershipEventRow).on_conflict_do_nothing()
            if not (await conn.execute(stmt.values(**new[0]))).rowcount:
                return 0
        else:
            await self._insert_many(conn, MembershipEventRow, new)
        await self._bump(conn, *{row["chat_id"] for row in new})
        return len(new)

    async def _bump(self, conn: AsyncConnection, *chat_ids: int) -> None:
        """A new data version for these groups' people (every group's, with none named)."""
        stmt = update(Chat).values(data_version=Chat.data_version + 1)
        if chat_ids:
            stmt = stmt.where(Chat.chat_id.in_(sorted(chat_ids)))
        await conn.execute(stmt)

    # ---- hosts -----------------------------------------------------------------------

    async def _hosts_now(self, conn: AsyncConnection, chat_id: int) -> set[int]:
        rows = await conn.execute(
            select(HostEventRow.user_id, HostEventRow.is_host)
            .where(HostEventRow.chat_id == chat_id)
            .order_by(HostEventRow.ts, HostEventRow.seq, HostEventRow.id)
        )
        state: dict[int, bool] = {}
        for user_id, is_host in rows:
            state[user_id] = is_host
        return {u for u, h in state.items() if h}

    async def admin_hosts(self, chat_id: int) -> set[int]:
        """Users who are admins/creator now, as last seen from Telegram."""
        async with self._connect() as conn:
            return await self._hosts_now(conn, chat_id)

    async def set_host(self, change: HostChange) -> bool:
        """Record a change of admin status; nothing when the status is already that."""
        async with self._begin() as conn:
            current = await self._hosts_now(conn, change.chat_id)
            if (change.user_id in current) == change.is_host:
                return False
            await self._insert_host_changes(conn, [change])
            return True

    async def sync_admins(self, chat_id: int, admin_ids: set[int], ts_utc: datetime) -> None:
        """Make the stored admin set equal Telegram's getChatAdministrators answer."""
        async with self._begin() as conn:
            current = await self._hosts_now(conn, chat_id)
            changes = [
                HostChange(chat_id, u, ts_utc, True, source="admins")
                for u in sorted(admin_ids - current)
            ] + [
                HostChange(chat_id, u, ts_utc, False, source="admins")
                for u in sorted(current - admin_ids)
            ]
            await self._insert_host_changes(conn, changes)

    async def _insert_host_changes(
        self, conn: AsyncConnection, changes: Sequence[HostChange]
    ) -> None:
        if not changes:
            return
        await self._bump(conn, changes[0].chat_id)
        await conn.execute(
            self._insert(HostEventRow).on_conflict_do_nothing(), [host_row(c) for c in changes]
        )

    async def manual_hosts(self, chat_id: int) -> set[int]:
        async with self._connect() as conn:
            rows = await conn.execute(
                select(ManualHost.user_id).where(ManualHost.chat_id == chat_id)
            )
            return set(rows.scalars())

    async def set_manual_host(
        self, chat_id: int, user_id: int, on: bool, ts_utc: datetime
    ) -> None:
        async with self._begin() as conn:
            await self._bump(conn, chat_id)
            if on:
                await conn.execute(
                    self._insert(ManualHost)
                    .values(chat_id=chat_id, user_id=user_id, added_ts=to_ts(ts_utc))
                    .on_conflict_do_nothing()
                )
            else:
                await conn.execute(
                    delete(ManualHost).where(
                        ManualHost.chat_id == chat_id, ManualHost.user_id == user_id
                    )
                )

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
            await self._insert_many(conn, MessageRow, list(rows.values()))
        if activity:
            await self._insert_many(conn, ActivityRow, activity)
        for flag, keys in flags.items():
            for chunk in _chunks(sorted(keys)):
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
        for chunk in _chunks(sorted(keys)):
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

    # ---- growth insights (SPEC 12) ----------------------------------------------------

    async def newcomer_activity(
        self, chat_id: int, start_utc: datetime, end_utc: datetime
    ) -> list[ActivityMark]:
        """The activity marks, from `start_utc` on, of the people who joined in [start, end):
        one index range scan per level, the newcomers picked out by the database."""
        joined = select(MembershipEventRow.user_id).where(
            MembershipEventRow.chat_id == chat_id,
            MembershipEventRow.kind == MemberKind.JOIN,
            MembershipEventRow.ts >= to_ts(start_utc),
            MembershipEventRow.ts < to_ts(end_utc),
        )
        async with self._connect() as conn:
            rows = await conn.execute(
                select(
                    ActivityRow.user_id, ActivityRow.level, ActivityRow.ts, ActivityRow.message_id
                ).where(
                    ActivityRow.chat_id == chat_id,
                    ActivityRow.level.in_([str(level) for level in Level]),
                    ActivityRow.ts >= to_ts(start_utc),
                    ActivityRow.user_id.in_(joined),
                )
            )
            return [
                ActivityMark(chat_id, u, Level(level), from_ts(ts), mid)
                for u, level, ts, mid in rows
            ]

    async def member_message_counts(
        self, chat_id: int, start_utc: datetime, end_utc: datetime, bucket_s: int = 900
    ) -> list[tuple[datetime, int]]:
        """Member messages in [start, end) counted per `bucket_s` of UTC time, as (bucket
        start, count). Every zone's offset is a multiple of 15 minutes, so a 900 s bucket
        lies within one local hour."""
        # a literal, not a parameter: PostgreSQL matches GROUP BY to the select's expression
        bucket = MessageRow.ts - MessageRow.ts % literal_column(str(int(bucket_s)))
        async with self._connect() as conn:
            rows = await conn.execute(
                select(bucket, func.count())
                .where(
                    MessageRow.chat_id == chat_id,
                    MessageRow.ts >= to_ts(start_utc),
                    MessageRow.ts < to_ts(end_utc),
                    MessageRow.role == Role.MEMBER,
                )
                .group_by(bucket)
            )
            return [(from_ts(b), n) for b, n in rows]

    async def host_post_responders(
        self, chat_id: int, start_utc: datetime, end_utc: datetime, within_s: int
    ) -> list[tuple[datetime, int]]:
        """Host posts in [start, end), each with the distinct members who replied to it
        within 0..within_s seconds (replies after `end` included)."""
        async with self._connect() as conn:
            posts = await conn.execute(
                select(MessageRow.message_id, MessageRow.ts)
                .where(
                    MessageRow.chat_id == chat_id,
                    MessageRow.ts >= to_ts(start_utc),
                    MessageRow.ts < to_ts(end_utc),
                    MessageRow.role == Role.HOST,
                )
                .order_by(MessageRow.ts)
            )
            post_ts: dict[int | None, int] = {m: t for m, t in posts}
            responders: dict[int | None, set[int]] = {m: set() for m in post_ts}
            for chunk in _chunks(list(post_ts)):  # in time order: together, one pass
                replies = await conn.execute(
                    select(
                        MessageRow.reply_to_message_id, MessageRow.sender_id, MessageRow.ts
                    ).where(
                        MessageRow.chat_id == chat_id,
                        MessageRow.ts >= post_ts[chunk[0]],
                        MessageRow.ts <= post_ts[chunk[-1]] + within_s,
                        MessageRow.role == Role.MEMBER,
                        MessageRow.reply_to_message_id.in_(chunk),
                    )
                )
                for target, sender, ts in replies:
                    t0 = post_ts[target]
                    if sender is not None and 0 <= ts - t0 <= within_s:
                        responders[target].add(sender)
        return [(from_ts(post_ts[m]), len(who)) for m, who in responders.items()]

    async def user_profiles(
        self, user_ids: Iterable[int]
    ) -> dict[int, tuple[str | None, str | None]]:
        """{user id: (display name, username)} of the users known."""
        out: dict[int, tuple[str | None, str | None]] = {}
        async with self._connect() as conn:
            for chunk in _chunks(sorted(set(user_ids))):
                rows = await conn.execute(
                    select(User.user_id, User.first_name, User.username).where(
                        User.user_id.in_(chunk)
                    )
                )
                out.update({u: (f, n) for u, f, n in rows})
        return out

    # ---- migration -------------------------------------------------------------------

    async def migrate_chat(self, old_id: int, new_id: int) -> bool:
        """Move all history of a group to its supergroup id (SPEC 2).

        Pre-migration message ids are negated, as Telegram Desktop exports them, because
        the supergroup numbers its messages afresh.
        """
        async with self._begin() as conn:
            old = (await conn.execute(select(Chat).where(Chat.chat_id == old_id))).first()
            if old is None or old.migrated_to_chat_id == new_id:
                return False
            await conn.execute(
                self._insert(Chat)
                .values(
                    chat_id=new_id,
                    title=old.title,
                    type="supergroup",
                    baseline_count=old.baseline_count,
                    linked_chat_id=old.linked_chat_id,
                    bot_is_admin=old.bot_is_admin,
                    bot_status=old.bot_status,
                    tracking_start_ts=old.tracking_start_ts,
                    timezone=old.timezone,
                    language=old.language,
                    digest_time=old.digest_time,
                    digest_to=old.digest_to,
                )
                .on_conflict_do_nothing(index_elements=["chat_id"])
            )
            await conn.execute(
                update(Chat)
                .where(Chat.chat_id == new_id)
                .values(
                    tracking_start_ts=func.coalesce(
                        func.min(Chat.tracking_start_ts, old.tracking_start_ts)
                        if self.dialect == "sqlite"
                        else func.least(Chat.tracking_start_ts, old.tracking_start_ts),
                        old.tracking_start_ts,
                    ),
                    baseline_count=old.baseline_count,
                )
            )
            for model in (MembershipEventRow, HostEventRow, ManualHost, MemberCount, ChatTarget):
                await conn.execute(
                    update(model).where(model.chat_id == old_id).values(chat_id=new_id)
                )
            await conn.execute(
                update(MessageRow)
                .where(MessageRow.chat_id == old_id)
                .values(
                    chat_id=new_id,
                    message_id=-MessageRow.message_id,
                    reply_to_message_id=-MessageRow.reply_to_message_id,
                )
            )
            await conn.execute(
                update(ActivityRow)
                .where(ActivityRow.chat_id == old_id)
                .values(chat_id=new_id, message_id=-ActivityRow.message_id)
            )
            await conn.execute(
                update(Chat)
                .where(Chat.chat_id == old_id)
                .values(migrated_to_chat_id=new_id, bot_status="migrated")
            )
            await self._bump(conn, new_id)
            return True

    async def resolve_chat_id(self, chat_id: int) -> int:
        """Follow a group's migration to its supergroup, if any."""
        async with self._connect() as conn:
            target = (
                await conn.execute(select(Chat.migrated_to_chat_id).where(Chat.chat_id == chat_id))
            ).scalar()
        return target if target is not None else chat_id

    # ---- targets set in chat ----------------------------------------------------------

    async def chat_targets(self, chat_id: int) -> dict[str, tuple[float | None, str | None]]:
        """metric -> (value or None when switched off, range) as set with /settarget."""
        async with self._connect() as conn:
            rows = await conn.execute(
                select(ChatTarget.metric, ChatTarget.value, ChatTarget.range).where(
                    ChatTarget.chat_id == chat_id
                )
            )
            return {m: (v, r) for m, v, r in rows}

    async def set_chat_target(
        self,
        chat_id: int,
        metric: str,
        value: float | None,
        rng: str | None,
        by: int,
        ts_utc: datetime,
    ) -> None:
        stmt = self._insert(ChatTarget).values(
            chat_id=chat_id, metric=metric, value=value, range=rng, set_by=by, ts=to_ts(ts_utc)
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["chat_id", "metric"],
            set_={"value": value, "range": rng, "set_by": by, "ts": to_ts(ts_utc)},
        )
        async with self._begin() as conn:
            await conn.execute(stmt)

    # ---- reading history -------------------------------------------------------------

    async def history(self, chat_id: int) -> HistoryRows:
        async with self._connect() as conn:
            chat = (await conn.execute(select(Chat).where(Chat.chat_id == chat_id))).first()
            mem = await conn.execute(
                select(
                    MembershipEventRow.user_id,
                    MembershipEventRow.kind,
                    MembershipEventRow.ts,
                    MembershipEventRow.seq,
                    MembershipEventRow.source,
                    MembershipEventRow.invite_link,
                    MembershipEventRow.join_source,
                    MembershipEventRow.inviter_id,
                )
                .where(MembershipEventRow.chat_id == chat_id)
                .order_by(MembershipEventRow.ts, MembershipEventRow.seq, MembershipEventRow.id)
            )
            membership = [
                MembershipEvent(chat_id, u, MemberKind(k), from_ts(ts), seq, src, link, js, inv)
                for u, k, ts, seq, src, link, js, inv in mem
            ]
            hosts = await conn.execute(
                select(
                    HostEventRow.user_id,
                    HostEventRow.ts,
                    HostEventRow.is_host,
                    HostEventRow.seq,
                    HostEventRow.source,
                )
                .where(HostEventRow.chat_id == chat_id)
                .order_by(HostEventRow.ts, HostEventRow.seq, HostEventRow.id)
            )
            host_changes = [
                HostChange(chat_id, u, from_ts(ts), h, seq, src) for u, ts, h, seq, src in hosts
            ]
            people_with_events = (
                select(MembershipEventRow.user_id)
                .where(MembershipEventRow.chat_id == chat_id)
                .group_by(MembershipEventRow.user_id)
                .subquery()
            )
            first_member_post = (
                select(func.min(MessageRow.ts))
                .where(
                    MessageRow.chat_id == chat_id,
                    MessageRow.sender_id == people_with_events.c.user_id,
                    MessageRow.role == Role.MEMBER,
                )
                .scalar_subquery()
            )
            firsts = await conn.execute(select(people_with_events.c.user_id, first_member_post))
            first_post = {u: from_ts(ts) for u, ts in firsts if ts is not None}
            people = {e.user_id for e in membership} | {h.user_id for h in host_changes}
            people |= {e.inviter_id for e in membership if e.inviter_id is not None}
            bots = await conn.execute(select(User.user_id).where(User.is_bot))
            bot_ids = frozenset(b for b in bots.scalars() if b in people)
            manual = await conn.execute(
                select(ManualHost.user_id).where(ManualHost.chat_id == chat_id)
            )
            manual_ids = frozenset(manual.scalars())
        start = chat.tracking_start_ts if chat is not None else None
        return HistoryRows(
            tracking_start_utc=from_ts(start) if start is not None else None,
            baseline_count=chat.baseline_count if chat is not None else 0,
            membership=membership,
            host_changes=host_changes,
            bots=bot_ids,
            manual_hosts=manual_ids,
            first_post_utc=first_post,
        )

    async def chat_periods(
        self,
    ) -> list[tuple[int, str | None, datetime | None, datetime | None, int]]:
        """(chat id, title, first event, last event, membership events) of every group."""
        ev = MembershipEventRow
        stmt = (
            select(Chat.chat_id, Chat.title, func.min(ev.ts), func.max(ev.ts), func.count(ev.id))
            .outerjoin(ev, ev.chat_id == Chat.chat_id)
            .where(Chat.migrated_to_chat_id.is_(None))
            .group_by(Chat.chat_id, Chat.title)
            .order_by(Chat.chat_id)
        )
        async with self._connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [
            (c, t, from_ts(a) if a is not None else None, from_ts(b) if b is not None else None, n)
            for c, t, a, b, n in rows
        ]

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
        """Take the right to send one digest/alert; False if sent or being sent elsewhere."""
        key = (
            Claim.chat_id == chat_id,
            Claim.kind == kind,
            Claim.metric == metric,
            Claim.period == period,
        )
        async with self._begin() as conn:
            inserted = await conn.execute(
                self._insert(Claim)
                .values(
                    chat_id=chat_id,
                    kind=kind,
                    metric=metric,
                    period=period,
                    owner=owner,
                    claimed_ts=to_ts(now),
                    sent_ts=None,
                    attempts=1,
                )
                .on_conflict_do_nothing()
            )
            if inserted.rowcount:
                return True
            # an unsent claim whose lease ran out (a crash, a failed send) can be taken over
            taken = await conn.execute(
                update(Claim)
                .where(*key, Claim.sent_ts.is_(None), Claim.claimed_ts <= to_ts(now) - lease_s)
                .values(owner=owner, claimed_ts=to_ts(now), attempts=Claim.attempts + 1)
            )
            return bool(taken.rowcount)

    async def finish_claim(
        self, chat_id: int, kind: str, metric: str, period: str, now: datetime, *, sent: bool
    ) -> None:
        """Record success, or release the claim at once so the next check retries it."""
        key = (
            Claim.chat_id == chat_id,
            Claim.kind == kind,
            Claim.metric == metric,
            Claim.period == period,
        )
        values = {"sent_ts": to_ts(now)} if sent else {"claimed_ts": 0}
        async with self._begin() as conn:
            await conn.execute(update(Claim).where(*key).values(**values))

    # ---- privacy ---------------------------------------------------------------------

    async def forget_user(self, user_id: int) -> int:
        """Remove one person's rows from every group (/forgetme); returns rows removed."""
        removed = 0
        self._known_users.pop(user_id, None)
        async with self._begin() as conn:
            for stmt in (
                delete(ActivityRow).where(ActivityRow.user_id == user_id),
                delete(MessageRow).where(MessageRow.sender_id == user_id),
                delete(MembershipEventRow).where(MembershipEventRow.user_id == user_id),
                delete(HostEventRow).where(HostEventRow.user_id == user_id),
                delete(ManualHost).where(ManualHost.user_id == user_id),
                delete(User).where(User.user_id == user_id),
            ):
                removed += (await conn.execute(stmt)).rowcount or 0
            await conn.execute(
                update(MessageRow)
                .where(MessageRow.reply_to_sender_id == user_id)
                .values(reply_to_sender_id=None)
            )
            await self._bump(conn)
        return removed

    async def purge_chat(self, chat_id: int) -> None:
        """Remove everything stored about a group (/purge)."""
        async with self._begin() as conn:
            for model in (
                ActivityRow,
                MessageRow,
                MembershipEventRow,
                HostEventRow,
                ManualHost,
                MemberCount,
                ChatTarget,
                Claim,
                Chat,
            ):
                await conn.execute(delete(model).where(model.chat_id == chat_id))

    async def drop_old_messages(self, before_utc: datetime) -> int:
        """Per-message rows older than the retention period (joins and leaves are kept:
        head-counts are built from them)."""
        async with self._begin() as conn:
            await conn.execute(delete(ActivityRow).where(ActivityRow.ts < to_ts(before_utc)))
            result = await conn.execute(
                delete(MessageRow).where(MessageRow.ts < to_ts(before_utc))
            )
            return result.rowcount or 0

    # ---- update offset -------------------------------------------------------------

    async def get_state(self, key: str) -> int | None:
        async with self._connect() as conn:
            value: int | None = (
                await conn.execute(select(BotState.value).where(BotState.key == key))
            ).scalar()
            return value

    async def set_state(self, key: str, value: int) -> None:
        stmt = self._insert(BotState).values(key=key, value=value)
        stmt = stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value})
        async with self._begin() as conn:
            await conn.execute(stmt)

    # ---- dead-letter table -----------------------------------------------------------

    async def record_failed_updates(
        self, failures: Sequence[tuple[int, str, str]], ts: int
    ) -> None:
        """(update_id, error class, handler) of updates given up on; the first record of an
        update is kept."""
        rows = [
            {
                "update_id": update_id,
                "ts": ts,
                "error": error[:FAILED_NAME_MAX],
                "handler": handler[:FAILED_NAME_MAX],
            }
            for update_id, error, handler in failures
        ]
        if rows:
            async with self._begin() as conn:
                await self._insert_many(conn, FailedUpdate, rows)

    async def failed_updates(self) -> list[tuple[int, int, str, str]]:
        """(update_id, ts, error class, handler) of the dead-letter table, by update id."""
        async with self._connect() as conn:
            rows = await conn.execute(
                select(
                    FailedUpdate.update_id,
                    FailedUpdate.ts,
                    FailedUpdate.error,
                    FailedUpdate.handler,
                ).order_by(FailedUpdate.update_id)
            )
            return [tuple(r) for r in rows]  # type: ignore[misc]

    async def counts(self) -> dict[str, int]:
        """Row counts per table (for tests and `opsbot db status`)."""
        out: dict[str, int] = {}
        async with self._connect() as conn:
            for table in Base.metadata.sorted_tables:
                n = (await conn.execute(select(func.count()).select_from(table))).scalar_one()
                out[table.name] = n
        return out


def insert_for(dialect: str, model: Any) -> Any:
    """INSERT for the dialect, so `.on_conflict_do_nothing()` works on both databases."""
    tbl: Table = model.__table__
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(tbl)


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


def membership_row(ev: MembershipEvent) -> dict[str, Any]:
    """The `membership_events` row of a join or leave (every column but the id)."""
    return {
        "chat_id": ev.chat_id,
        "user_id": ev.user_id,
        "kind": str(ev.kind),
        "ts": to_ts(ev.ts_utc),
        "seq": ev.seq,
        "source": ev.source,
        "invite_link": ev.invite_link,
        "invite_link_name": None,
        "via_join_request": ev.join_source == "request",
        "join_source": ev.join_source,
        "inviter_id": ev.inviter_id,
    }


RICHER_KEYS = ("source", "invite_link", "via_join_request", "join_source", "inviter_id")


def _keep_richer(
    ev: MembershipEvent,
    ts: int,
    around: Sequence[tuple[str, int]],
    poorer: dict[tuple[int, int, int], int | dict[str, Any]],
    richer: list[tuple[int, dict[str, Any]]],
) -> None:
    """A chat_member join that repeats a join stored from a service message (or an import)
    says more: its link, request flag and inviter replace theirs (SPEC 2, 12)."""
    for kind, t in sorted(around, key=lambda x: abs(x[1] - ts)):
        stored = poorer.pop((ev.chat_id, ev.user_id, t), None) if kind == ev.kind else None
        if stored is None:
            continue
        values = {k: membership_row(ev)[k] for k in RICHER_KEYS}
        if isinstance(stored, dict):  # written in this same call: not in the table yet
            stored.update(values)
        else:
            richer.append((stored, values))
        return


def host_row(change: HostChange) -> dict[str, Any]:
    return {
        "chat_id": change.chat_id,
        "user_id": change.user_id,
        "ts": to_ts(change.ts_utc),
        "seq": change.seq,
        "is_host": change.is_host,
        "source": change.source,
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


def _chunks(ids: Sequence[Any], size: int = 400) -> Iterable[Sequence[Any]]:
    """Id lists of a size any `IN (...)` takes on SQLite and PostgreSQL."""
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


def is_duplicate(kind: MemberKind, ts: int, near: Sequence[tuple[str, int]]) -> bool:
    """Same kind within the dedup window with no opposite event strictly between (SPEC 2)."""
    for other_kind, other_ts in near:
        if other_kind != kind:
            continue
        lo, hi = sorted((ts, other_ts))
        if not any(k != kind and lo < t < hi for k, t in near):
            return True
    return False
