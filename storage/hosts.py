"""Hosts: admin status as last seen from Telegram (`host_events`, stored only when it
changes) and hosts added with /hosts add (`manual_hosts`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.events import HostChange
from storage.chats import bump
from storage.models import Chat, HostEventRow, ManualHost
from storage.sql import insert, to_ts


def host_row(change: HostChange) -> dict[str, Any]:
    return {
        "chat_id": change.chat_id,
        "user_id": change.user_id,
        "ts": to_ts(change.ts_utc),
        "seq": change.seq,
        "is_host": change.is_host,
        "source": change.source,
    }


async def admin_hosts(conn: AsyncConnection, chat_id: int) -> set[int]:
    """Users who are admins/creator now, as last seen from Telegram."""
    rows = await conn.execute(
        select(HostEventRow.user_id, HostEventRow.is_host)
        .where(HostEventRow.chat_id == chat_id)
        .order_by(HostEventRow.ts, HostEventRow.seq, HostEventRow.id)
    )
    state: dict[int, bool] = {}
    for user_id, is_host in rows:
        state[user_id] = is_host
    return {u for u, h in state.items() if h}


async def set_host(conn: AsyncConnection, change: HostChange) -> bool:
    """Record a change of admin status; nothing when the status is already that."""
    current = await admin_hosts(conn, change.chat_id)
    if (change.user_id in current) == change.is_host:
        return False
    await _insert_host_changes(conn, [change])
    return True


async def sync_admins(
    conn: AsyncConnection, chat_id: int, admin_ids: set[int], ts_utc: datetime
) -> None:
    """Make the stored admin set equal Telegram's getChatAdministrators answer."""
    current = await admin_hosts(conn, chat_id)
    changes = [
        HostChange(chat_id, u, ts_utc, True, source="admins") for u in sorted(admin_ids - current)
    ] + [
        HostChange(chat_id, u, ts_utc, False, source="admins") for u in sorted(current - admin_ids)
    ]
    await _insert_host_changes(conn, changes)


async def _insert_host_changes(conn: AsyncConnection, changes: Sequence[HostChange]) -> None:
    if not changes:
        return
    await bump(conn, changes[0].chat_id)
    await conn.execute(
        insert(conn, HostEventRow).on_conflict_do_nothing(), [host_row(c) for c in changes]
    )


async def manual_hosts(conn: AsyncConnection, chat_id: int) -> set[int]:
    rows = await conn.execute(select(ManualHost.user_id).where(ManualHost.chat_id == chat_id))
    return set(rows.scalars())


async def set_manual_host(
    conn: AsyncConnection,
    chat_id: int,
    user_id: int,
    on: bool,
    ts_utc: datetime,
    in_baseline: bool = False,
) -> None:
    """Add or remove a /hosts add host; `in_baseline`: the user is one of the members the
    baseline counted (in the group, no join recorded), so the baseline loses (or gets
    back) one person with the change (SPEC 4)."""
    await bump(conn, chat_id)
    if on:
        result = await conn.execute(
            insert(conn, ManualHost)
            .values(chat_id=chat_id, user_id=user_id, added_ts=to_ts(ts_utc))
            .on_conflict_do_nothing()
        )
    else:
        result = await conn.execute(
            delete(ManualHost).where(ManualHost.chat_id == chat_id, ManualHost.user_id == user_id)
        )
    if in_baseline and result.rowcount:
        await conn.execute(
            update(Chat)
            .where(Chat.chat_id == chat_id, Chat.tracking_start_ts.is_not(None))
            .values(baseline_count=Chat.baseline_count + (-1 if on else 1))
        )
