"""Exactly-once sending: a digest or alert is claimed before it is sent (table `claims`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.models import Claim
from storage.sql import insert, to_ts


async def claim(
    conn: AsyncConnection,
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
    inserted = await conn.execute(
        insert(conn, Claim)
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
    conn: AsyncConnection,
    chat_id: int,
    kind: str,
    metric: str,
    period: str,
    now: datetime,
    *,
    sent: bool,
) -> None:
    """Record success, or release the claim at once so the next check retries it."""
    key = (
        Claim.chat_id == chat_id,
        Claim.kind == kind,
        Claim.metric == metric,
        Claim.period == period,
    )
    values = {"sent_ts": to_ts(now)} if sent else {"claimed_ts": 0}
    await conn.execute(update(Claim).where(*key).values(**values))
