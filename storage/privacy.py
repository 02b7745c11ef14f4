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
    """Remove one person's rows from every group (/forgetme); returns rows removed."""
    removed = 0
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
    await bump(conn)
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
