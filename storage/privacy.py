"""What is removed: one person everywhere (/forgetme), one group (/purge), and per-message
rows past the retention period."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncConnection

from storage import rollups
from storage.chats import bump
from storage.models import (
    ActivityRow,
    Chat,
    ChatTarget,
    Claim,
    DailyRollup,
    HostEventRow,
    ManualHost,
    MemberCount,
    MembershipEventRow,
    MessageRow,
    User,
)
from storage.sql import to_ts


async def forget_user(conn: AsyncConnection, user_id: int) -> int:
    """Remove one person's rows from every group (/forgetme); returns rows removed. Each
    group they were in has its numbers invalid from their earliest row there on (before
    it, they counted only through the baseline, which stays)."""
    removed = 0
    since: dict[int, int] = {}
    for model, person in (
        (ActivityRow, ActivityRow.user_id),
        (MessageRow, MessageRow.sender_id),
        (MembershipEventRow, MembershipEventRow.user_id),
        (HostEventRow, HostEventRow.user_id),
    ):
        rows = await conn.execute(
            delete(model).where(person == user_id).returning(model.chat_id, model.ts)
        )
        for chat_id, ts in rows:
            removed += 1
            since[chat_id] = min(since.get(chat_id, ts), ts)
    hosts = await conn.execute(
        delete(ManualHost).where(ManualHost.user_id == user_id).returning(ManualHost.chat_id)
    )
    for (chat_id,) in hosts:  # a host all along: every day of the group
        removed += 1
        since[chat_id] = rollups.EVERYTHING
    removed += (await conn.execute(delete(User).where(User.user_id == user_id))).rowcount or 0
    await conn.execute(
        update(MessageRow)
        .where(MessageRow.reply_to_sender_id == user_id)
        .values(reply_to_sender_id=None)
    )
    for chat_id, ts in since.items():
        await bump(conn, chat_id, since_ts=ts)
    return removed


async def purge_chat(conn: AsyncConnection, chat_id: int) -> None:
    """Remove everything stored about a group (/purge)."""
    for model in (
        ActivityRow,
        MessageRow,
        MembershipEventRow,
        HostEventRow,
        ManualHost,
        MemberCount,
        ChatTarget,
        Claim,
        DailyRollup,
        Chat,
    ):
        await conn.execute(delete(model).where(model.chat_id == chat_id))


async def drop_old_messages(conn: AsyncConnection, before_utc: datetime) -> int:
    """Per-message rows older than the retention period (joins and leaves are kept:
    head-counts are built from them)."""
    dropped = await conn.execute(delete(ActivityRow).where(ActivityRow.ts < to_ts(before_utc)))
    result = await conn.execute(delete(MessageRow).where(MessageRow.ts < to_ts(before_utc)))
    if dropped.rowcount or result.rowcount:  # old days' activity, first posts: recomputed
        await rollups.mark_dirty(conn, None, rollups.EVERYTHING)
    return result.rowcount or 0
