"""Batched, all-or-nothing writes for history imports (the live path uses repo.py).

One transaction per import: a broken file leaves the database exactly as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.events import ActivityMark, HostChange, MembershipEvent, Post, ReplyTarget
from storage.models import (
    ActivityRow,
    Chat,
    HostEventRow,
    MembershipEventRow,
    MessageRow,
    User,
)
from storage.repo import Repo, to_ts

BATCH = 5000


class BulkWriter:
    """Collects rows and writes them in batches on one connection inside one transaction."""

    def __init__(self, repo: Repo, conn: AsyncConnection) -> None:
        self.repo, self.conn = repo, conn
        self.pending: dict[Any, list[dict[str, Any]]] = {}

    async def existing_membership(self, chat_id: int) -> dict[int, list[tuple[str, int]]]:
        """(kind, ts) per user of what is already stored, for the 60 s dedup rule."""
        rows = await self.conn.execute(
            select(MembershipEventRow.user_id, MembershipEventRow.kind, MembershipEventRow.ts)
            .where(MembershipEventRow.chat_id == chat_id)
            .order_by(MembershipEventRow.ts)
        )
        out: dict[int, list[tuple[str, int]]] = {}
        for user, kind, ts in rows:
            out.setdefault(user, []).append((kind, ts))
        return out

    async def stored_message(self, chat_id: int, message_id: int) -> ReplyTarget | None:
        from bot.events import Role
        from storage.repo import from_ts

        row = (
            await self.conn.execute(
                select(MessageRow.ts, MessageRow.role, MessageRow.sender_id).where(
                    MessageRow.chat_id == chat_id, MessageRow.message_id == message_id
                )
            )
        ).first()
        return (
            None
            if row is None
            else ReplyTarget(message_id, from_ts(row.ts), Role(row.role), row.sender_id)
        )

    async def chat(self, chat_id: int, title: str | None, type_: str) -> tuple[int | None, int]:
        """Ensure the chat row; returns its (tracking start ts, baseline)."""
        await self.conn.execute(
            self.repo._insert(Chat)
            .values(chat_id=chat_id, title=title, type=type_, baseline_count=0, bot_is_admin=False)
            .on_conflict_do_nothing(index_elements=["chat_id"])
        )
        row = (
            await self.conn.execute(
                select(Chat.tracking_start_ts, Chat.baseline_count).where(Chat.chat_id == chat_id)
            )
        ).one()
        return row.tracking_start_ts, row.baseline_count

    async def set_tracking(self, chat_id: int, start: datetime, baseline: int) -> None:
        await self.conn.execute(
            update(Chat)
            .where(Chat.chat_id == chat_id)
            .values(tracking_start_ts=to_ts(start), baseline_count=baseline)
        )

    async def _add(self, model: Any, row: dict[str, Any]) -> None:
        rows = self.pending.setdefault(model, [])
        rows.append(row)
        if len(rows) >= BATCH:
            await self._flush(model)

    async def _flush(self, model: Any) -> None:
        rows = self.pending.pop(model, [])
        if not rows:
            return
        stmt = self.repo._insert(model)
        if model is User:
            stmt = stmt.on_conflict_do_update(
                index_elements=["user_id"],
                set_={"first_name": stmt.excluded.first_name, "is_bot": stmt.excluded.is_bot},
            )
        else:
            stmt = stmt.on_conflict_do_nothing()
        await self.conn.execute(stmt, rows)

    async def bump(self, chat_id: int) -> None:
        await self.repo._bump(self.conn, chat_id)

    async def flush(self) -> None:
        # users and messages first: activity refers to messages by id
        for model in (User, MembershipEventRow, HostEventRow, MessageRow, ActivityRow):
            await self._flush(model)

    async def user(self, user_id: int, name: str | None, is_bot: bool) -> None:
        await self._add(
            User, {"user_id": user_id, "is_bot": is_bot, "first_name": name, "username": None}
        )

    async def membership(self, ev: MembershipEvent) -> None:
        await self._add(
            MembershipEventRow,
            {
                "chat_id": ev.chat_id,
                "user_id": ev.user_id,
                "kind": str(ev.kind),
                "ts": to_ts(ev.ts_utc),
                "seq": ev.seq,
                "source": ev.source,
                "invite_link": ev.invite_link,
                "invite_link_name": None,
                "via_join_request": False,
            },
        )

    async def host(self, change: HostChange) -> None:
        await self._add(
            HostEventRow,
            {
                "chat_id": change.chat_id,
                "user_id": change.user_id,
                "ts": to_ts(change.ts_utc),
                "seq": change.seq,
                "is_host": change.is_host,
                "source": change.source,
            },
        )

    async def post(
        self, post: Post, reply: ReplyTarget | None, marks: Sequence[ActivityMark]
    ) -> None:
        levels = {(m.message_id, m.level) for m in marks}
        await self._add(
            MessageRow,
            {
                "chat_id": post.chat_id,
                "message_id": post.message_id,
                "ts": to_ts(post.ts_utc),
                "role": str(post.role),
                "sender_id": post.sender_id,
                "sender_chat_id": post.sender_chat_id,
                "reply_to_message_id": reply.message_id if reply else None,
                "reply_to_sender_id": reply.sender_id if reply else None,
                "is_question": post.is_question,
                "is_response": any(lv == "response" for _, lv in levels),
                "is_discussion": any(lv == "interaction" for _, lv in levels),
            },
        )
        for m in marks:
            await self._add(
                ActivityRow,
                {
                    "chat_id": m.chat_id,
                    "level": str(m.level),
                    "message_id": m.message_id,
                    "user_id": m.user_id,
                    "ts": to_ts(m.ts_utc),
                },
            )
