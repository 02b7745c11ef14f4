"""The dead-letter table (`failed_updates`): ids and error classes of updates given up on."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.models import FAILED_NAME_MAX, FailedUpdate
from storage.sql import insert_many


async def record_failed_updates(
    conn: AsyncConnection, failures: Sequence[tuple[int, str, str]], ts: int
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
        await insert_many(conn, FailedUpdate, rows)


async def failed_updates(conn: AsyncConnection) -> list[tuple[int, int, str, str]]:
    """(update_id, ts, error class, handler) of the dead-letter table, by update id."""
    rows = await conn.execute(
        select(
            FailedUpdate.update_id,
            FailedUpdate.ts,
            FailedUpdate.error,
            FailedUpdate.handler,
        ).order_by(FailedUpdate.update_id)
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]
