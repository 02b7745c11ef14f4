"""Batched, all-or-nothing writes for history imports (the live path writes through Repo).

A `BulkWriter` works on one connection inside one transaction: one import is one
transaction, so a broken file leaves the database exactly as it was. It buffers rows and
inserts them in batches with ON CONFLICT DO NOTHING, with the same column values the live path
writes for the same events, so imported and live rows are indistinguishable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.events import ActivityMark, HostChange, Level, MembershipEvent, Post, ReplyTarget, Role
from storage.chats import bump
from storage.hosts import host_row
from storage.membership import membership_row
from storage.models import (
    ActivityRow,
    Chat,
    HostEventRow,
    ManualHost,
    MembershipEventRow,
    MessageRow,
    User,
)
from storage.posts import activity_row, message_row
from storage.sql import insert_for, to_ts

BATCH = 5000  # rows per INSERT
IN_CHUNK = 1000  # ids per `IN (...)` list (well under SQLite's and asyncpg's parameter limits)


@dataclass(frozen=True, slots=True)
class ChatState:
    """What an import needs to know about a group's stored row."""

    chat_id: int
    tracking_start_ts: int | None
    baseline_count: int
    linked_chat_id: int | None
    migrated_to_chat_id: int | None


@dataclass(frozen=True, slots=True)
class StoredPost:
    """A message row already in the database (e.g. recorded live)."""

    message_id: int
    ts: int
    role: Role
    sender_id: int | None
    is_question: bool
    thread_id: int | None = None


class BulkWriter:
    """Buffers rows and writes them in batches on one connection, inside one transaction."""

    def __init__(self, conn: AsyncConnection, dialect: str, batch: int | None = None) -> None:
        self.conn = conn
        self.dialect = dialect
        self.batch = batch or BATCH
        self._users: dict[int, dict[str, Any]] = {}
        self._bots: dict[int, dict[str, Any]] = {}
        self._membership: list[dict[str, Any]] = []
        self._hosts: list[dict[str, Any]] = []
        self._messages: list[dict[str, Any]] = []
        self._activity: list[dict[str, Any]] = []
        # message ids whose is_response / is_discussion flag a later message set
        self._flags: dict[tuple[int, str], set[int]] = {}

    @classmethod
    @asynccontextmanager
    async def transaction(cls, engine: AsyncEngine) -> AsyncIterator[BulkWriter]:
        """One transaction: committed after the block (all rows flushed), else rolled back."""
        async with engine.begin() as conn:
            writer = cls(conn, engine.dialect.name)
            yield writer
            await writer.flush()

    def _insert(self, model: Any) -> Any:
        return insert_for(self.dialect, model)

    # ---- reading what is already stored --------------------------------------------

    async def chat_state(self, chat_id: int) -> ChatState | None:
        row = (
            await self.conn.execute(
                select(
                    Chat.tracking_start_ts,
                    Chat.baseline_count,
                    Chat.linked_chat_id,
                    Chat.migrated_to_chat_id,
                ).where(Chat.chat_id == chat_id)
            )
        ).first()
        if row is None:
            return None
        return ChatState(chat_id, row[0], row[1] or 0, row[2], row[3])

    async def resolve_chat_id(self, chat_id: int) -> int:
        """Follow a group's migration to its supergroup (as Repo.resolve_chat_id)."""
        seen = {chat_id}
        while True:
            state = await self.chat_state(chat_id)
            if state is None or state.migrated_to_chat_id is None:
                return chat_id
            chat_id = state.migrated_to_chat_id
            if chat_id in seen:
                return chat_id
            seen.add(chat_id)

    async def existing_membership(self, chat_id: int) -> dict[int, list[tuple[str, int]]]:
        """(kind, ts) per user of the joins and leaves already stored, for the 60 s rule."""
        rows = await self.conn.execute(
            select(MembershipEventRow.user_id, MembershipEventRow.kind, MembershipEventRow.ts)
            .where(MembershipEventRow.chat_id == chat_id)
            .order_by(MembershipEventRow.ts, MembershipEventRow.seq, MembershipEventRow.id)
        )
        out: dict[int, list[tuple[str, int]]] = {}
        for user, kind, ts in rows:
            out.setdefault(user, []).append((kind, ts))
        return out

    async def host_timeline(self, chat_id: int) -> dict[int, list[tuple[int, int, bool]]]:
        """(ts, seq, is_host) per user, in order, of the stored host changes."""
        rows = await self.conn.execute(
            select(HostEventRow.user_id, HostEventRow.ts, HostEventRow.seq, HostEventRow.is_host)
            .where(HostEventRow.chat_id == chat_id)
            .order_by(HostEventRow.ts, HostEventRow.seq, HostEventRow.id)
        )
        out: dict[int, list[tuple[int, int, bool]]] = {}
        for user, ts, seq, is_host in rows:
            out.setdefault(user, []).append((ts, seq, bool(is_host)))
        return out

    async def manual_hosts(self, chat_id: int) -> set[int]:
        rows = await self.conn.execute(
            select(ManualHost.user_id).where(ManualHost.chat_id == chat_id)
        )
        return set(rows.scalars())

    async def known_bots(self) -> set[int]:
        rows = await self.conn.execute(select(User.user_id).where(User.is_bot))
        return set(rows.scalars())

    async def message_id_range(self, chat_id: int) -> tuple[int, int] | None:
        """(lowest, highest) stored message id of the group, None if it has none."""
        lo, hi = (
            await self.conn.execute(
                select(func.min(MessageRow.message_id), func.max(MessageRow.message_id)).where(
                    MessageRow.chat_id == chat_id
                )
            )
        ).one()
        return None if lo is None else (int(lo), int(hi))

    async def stored_posts(self, chat_id: int, lo: int, hi: int) -> dict[int, StoredPost]:
        """Stored messages with lo <= message_id < hi (one primary-key range scan)."""
        rows = await self.conn.execute(
            select(
                MessageRow.message_id,
                MessageRow.ts,
                MessageRow.role,
                MessageRow.sender_id,
                MessageRow.is_question,
                MessageRow.thread_id,
            ).where(
                MessageRow.chat_id == chat_id,
                MessageRow.message_id >= lo,
                MessageRow.message_id < hi,
            )
        )
        return {
            m: StoredPost(m, ts, Role(role), s, bool(q), thread)
            for m, ts, role, s, q, thread in rows
        }

    async def group_users_named(self, chat_id: int, names: Iterable[str]) -> dict[str, list[int]]:
        """Display name -> ids of the users by that name who joined, left, posted or were
        hosts in the group (for exports that name people without an id)."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        in_group = (
            select(MembershipEventRow.user_id)
            .where(MembershipEventRow.chat_id == chat_id)
            .union(
                select(MessageRow.sender_id).where(
                    MessageRow.chat_id == chat_id, MessageRow.sender_id.is_not(None)
                ),
                select(HostEventRow.user_id).where(HostEventRow.chat_id == chat_id),
                select(ManualHost.user_id).where(ManualHost.chat_id == chat_id),
            )
            .subquery()
        )
        out: dict[str, list[int]] = {}
        for i in range(0, len(wanted), IN_CHUNK):
            rows = await self.conn.execute(
                select(User.first_name, User.user_id)
                .where(
                    User.first_name.in_(wanted[i : i + IN_CHUNK]),
                    User.user_id.in_(select(in_group.c[0])),
                )
                .order_by(User.user_id)
            )
            for name, user_id in rows:
                out.setdefault(str(name), []).append(user_id)
        return out

    # ---- the group's row ------------------------------------------------------------

    async def ensure_chat(self, chat_id: int, title: str | None, type_: str) -> None:
        await self.conn.execute(
            self._insert(Chat)
            .values(chat_id=chat_id, title=title, type=type_, baseline_count=0, bot_is_admin=False)
            .on_conflict_do_nothing(index_elements=["chat_id"])
        )
        if title:  # a title the bot learned live wins over the export's
            await self.conn.execute(
                update(Chat)
                .where(Chat.chat_id == chat_id, Chat.title.is_(None))
                .values(title=title)
            )

    async def set_tracking(self, chat_id: int, start: datetime, baseline: int) -> None:
        await self.conn.execute(
            update(Chat)
            .where(Chat.chat_id == chat_id)
            .values(tracking_start_ts=to_ts(start), baseline_count=baseline)
        )

    async def set_linked(self, chat_id: int, linked_chat_id: int) -> None:
        await self.conn.execute(
            update(Chat).where(Chat.chat_id == chat_id).values(linked_chat_id=linked_chat_id)
        )

    async def bump(self, chat_id: int) -> None:
        """A new data version for the group's people, and its rollups to be recomputed
        (as storage.chats.bump)."""
        await bump(self.conn, chat_id)

    # ---- buffered rows ---------------------------------------------------------------

    async def user(self, user_id: int, first_name: str | None) -> None:
        """A user row unless one is stored (what the bot learned live is kept)."""
        if user_id not in self._users:
            self._users[user_id] = {
                "user_id": user_id,
                "is_bot": False,
                "first_name": first_name,
                "username": None,
            }
            if len(self._users) >= self.batch:
                await self._flush_users()

    async def bots(self, user_ids: Iterable[int]) -> None:
        """Users that are bots (`opsbot import --bot`): is_bot is set even when stored."""
        for user_id in user_ids:
            self._bots[user_id] = {
                "user_id": user_id,
                "is_bot": True,
                "first_name": None,
                "username": None,
            }

    async def membership(self, ev: MembershipEvent) -> None:
        self._membership.append(membership_row(ev))
        if len(self._membership) >= self.batch:
            await self._flush_membership()

    async def host(self, change: HostChange) -> None:
        self._hosts.append(host_row(change))
        if len(self._hosts) >= self.batch:
            await self._flush_hosts()

    async def post(
        self, post: Post, reply: ReplyTarget | None, marks: Sequence[ActivityMark]
    ) -> None:
        """A new message row and the activity it causes (as Repo.record_post)."""
        flag = None
        if marks:
            flag = "is_response" if marks[0].level == Level.RESPONSE else "is_discussion"
        self._messages.append(message_row(post, reply, flag))
        for m in marks:
            self._activity.append(activity_row(m))
            if flag is not None and m.message_id != post.message_id:
                self._flags.setdefault((m.chat_id, flag), set()).add(m.message_id)
        if len(self._messages) >= self.batch:
            await self._flush_messages()
        if len(self._activity) >= self.batch:
            await self._flush_activity()

    # ---- writing ---------------------------------------------------------------------

    async def _execute(self, stmt: Any, rows: list[dict[str, Any]]) -> None:
        for i in range(0, len(rows), self.batch):
            await self.conn.execute(stmt, rows[i : i + self.batch])

    async def _flush_users(self) -> None:
        if self._users:
            rows = list(self._users.values())
            self._users.clear()
            await self._execute(self._insert(User).on_conflict_do_nothing(), rows)

    async def _flush_bots(self) -> None:
        if self._bots:
            rows = list(self._bots.values())
            self._bots.clear()
            stmt = self._insert(User)
            stmt = stmt.on_conflict_do_update(index_elements=["user_id"], set_={"is_bot": True})
            await self._execute(stmt, rows)

    async def _flush_membership(self) -> None:
        if self._membership:
            rows, self._membership = self._membership, []
            await self._execute(self._insert(MembershipEventRow).on_conflict_do_nothing(), rows)

    async def _flush_hosts(self) -> None:
        if self._hosts:
            rows, self._hosts = self._hosts, []
            await self._execute(self._insert(HostEventRow).on_conflict_do_nothing(), rows)

    async def _flush_messages(self) -> None:
        if self._messages:
            rows, self._messages = self._messages, []
            await self._execute(self._insert(MessageRow).on_conflict_do_nothing(), rows)
        # the rows the flags are on are all stored now: they are older than their replies
        flags, self._flags = self._flags, {}
        for (chat_id, flag), ids in flags.items():
            ordered = sorted(ids)
            for i in range(0, len(ordered), IN_CHUNK):
                await self.conn.execute(
                    update(MessageRow)
                    .where(
                        MessageRow.chat_id == chat_id,
                        MessageRow.message_id.in_(ordered[i : i + IN_CHUNK]),
                    )
                    .values({flag: True})
                )

    async def _flush_activity(self) -> None:
        if self._activity:
            rows, self._activity = self._activity, []
            await self._execute(self._insert(ActivityRow).on_conflict_do_nothing(), rows)

    async def flush(self) -> None:
        """Write every buffered row (the transaction stays open)."""
        await self._flush_users()
        await self._flush_bots()
        await self._flush_membership()
        await self._flush_hosts()
        await self._flush_messages()
        await self._flush_activity()
