"""Membership and head-count: joins and leaves (deduplicated across sources, SPEC 2) and
getChatMemberCount readings. What the metrics read of them: storage.people."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.events import MemberKind, MembershipEvent, Role
from storage.chats import bump
from storage.models import (
    MemberCount,
    MembershipEventRow,
)
from storage.rollups import EVERYTHING, Marks, mark_dirty
from storage.sql import chunks, insert, insert_many, to_ts

DEDUP_WINDOW_S = 60  # SPEC 2: the same join/leave seen from two sources within 60 s


async def write_membership(
    conn: AsyncConnection, events: Sequence[MembershipEvent], dirty: Marks | None = None
) -> int:
    """Store the events that are not duplicates of stored ones or of each other, in
    order; returns how many were new. One read for all groups, then executemany. The
    rollups' dirty marks go into `dirty` (written at the end of the batch), or are
    written now."""
    times = [to_ts(ev.ts_utc) for ev in events]
    near: dict[tuple[int, int], list[tuple[str, int]]] = {}
    poorer: dict[tuple[int, int, int], int | dict[str, Any]] = {}  # joins not via chat_member
    for chunk in chunks(sorted({(ev.chat_id, ev.user_id) for ev in events})):
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
    now = Marks() if dirty is None else dirty
    if richer:
        for chat_id in {ev.chat_id for ev in events}:
            now.changed(chat_id, EVERYTHING, version=True)
    if not new:
        if dirty is None:
            await write_changes(conn, now)
        return 0
    since = await _dirty_since(conn, new)
    stored = len(new)
    if len(new) == 1:  # rowcount tells whether another process stored it first
        stmt = insert(conn, MembershipEventRow).on_conflict_do_nothing()
        if not (await conn.execute(stmt.values(**new[0]))).rowcount:
            stored = 0
    else:
        await insert_many(conn, MembershipEventRow, new)
    if stored:
        for chat_id, ts in since.items():
            now.changed(chat_id, ts, version=True)
    if dirty is None:
        await write_changes(conn, now)
    return stored


async def write_changes(conn: AsyncConnection, marks: Marks) -> None:
    """Each group's new data version and dirty mark, from its earliest change."""
    for chat_id, ts in marks.since.items():
        if chat_id in marks.versions:
            await bump(conn, chat_id, since_ts=ts)
        else:
            await mark_dirty(conn, [chat_id], ts)
    marks.clear()


async def _dirty_since(conn: AsyncConnection, new: Sequence[dict[str, Any]]) -> dict[int, int]:
    """Per group, the earliest time the new events change its numbers from (rollups).
    An event changes what comes after it; one that becomes a person's first event can also
    change whether they were in the group before tracking (SPEC 2): everything."""
    pairs = sorted({(r["chat_id"], r["user_id"]) for r in new})
    times = await person_times(conn, pairs)
    first = {p: t[0] for p, t in times.items() if t[0] is not None}
    # whether newcomers posted or were admins before: only for people without events
    posted = {p: t[1] for p, t in times.items() if t[0] is None and t[1] is not None}
    hosted = {p for p, t in times.items() if t[0] is None and t[2] is not None}
    since: dict[int, int] = {}
    for r in new:
        pair, ts = (r["chat_id"], r["user_id"]), r["ts"]
        known = first.get(pair)
        if known is None:
            back = r["kind"] != MemberKind.JOIN or pair in hosted or posted.get(pair, ts) < ts
        else:
            back = ts <= known
        first[pair] = ts if known is None else min(known, ts)
        since[pair[0]] = min(since.get(pair[0], ts), EVERYTHING if back else ts)
    return since


async def person_times(
    conn: AsyncConnection, pairs: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], tuple[int | None, int | None, int | None]]:
    """Per (group, person): their first join or leave, first member post and last admin
    change, in one statement per few hundred people (index searches each). The ids are
    integers written into the statement."""
    out: dict[tuple[int, int], tuple[int | None, int | None, int | None]] = {}
    for chunk in chunks(pairs):
        people = ", ".join(f"({int(c)}, {int(u)})" for c, u in chunk)
        rows = await conn.execute(
            text(
                f"WITH p (chat_id, user_id) AS (VALUES {people}) SELECT p.chat_id, p.user_id,"
                " (SELECT min(m.ts) FROM membership_events m"
                "  WHERE m.chat_id = p.chat_id AND m.user_id = p.user_id),"
                " (SELECT min(g.ts) FROM messages g"
                "  WHERE g.chat_id = p.chat_id AND g.sender_id = p.user_id AND g.role = :member),"
                " (SELECT max(h.ts) FROM host_events h"
                "  WHERE h.chat_id = p.chat_id AND h.user_id = p.user_id)"
                " FROM p"
            ),
            {"member": str(Role.MEMBER)},
        )
        out.update({(c, u): (a, b, h) for c, u, a, b, h in rows})
    return out


async def record_member_count(
    conn: AsyncConnection, chat_id: int, ts_utc: datetime, count: int
) -> None:
    await conn.execute(
        insert(conn, MemberCount).values(chat_id=chat_id, ts=to_ts(ts_utc), count=count)
    )


async def joined_since_tracking(conn: AsyncConnection, chat_id: int, user_id: int) -> bool:
    """Whether the user's first recorded membership event in the group is a join: such
    a user is counted by the bot's intervals, not by the baseline."""
    first = (
        await conn.execute(
            select(MembershipEventRow.kind)
            .where(
                MembershipEventRow.chat_id == chat_id,
                MembershipEventRow.user_id == user_id,
            )
            .order_by(MembershipEventRow.ts, MembershipEventRow.seq, MembershipEventRow.id)
            .limit(1)
        )
    ).scalar()
    return first == str(MemberKind.JOIN)


async def event_times(
    conn: AsyncConnection,
    pairs: Sequence[tuple[int, int]],
    agg: Any,
    model: Any = MembershipEventRow,
    person: Any = MembershipEventRow.user_id,
    *where: Any,
) -> dict[tuple[int, int], int]:
    """`agg` (func.min, func.max) of the times of each (group, person)'s rows of `model`
    (joins and leaves unless named): index searches per group, never a table scan (which
    a row-value IN with GROUP BY gets on SQLite)."""
    by_chat: dict[int, list[int]] = {}
    for chat_id, user_id in pairs:
        by_chat.setdefault(chat_id, []).append(user_id)
    out: dict[tuple[int, int], int] = {}
    for chat_id, users in by_chat.items():
        for chunk in chunks(sorted(set(users))):
            rows = await conn.execute(
                select(person, agg(model.ts))
                .where(model.chat_id == chat_id, person.in_(chunk), *where)
                .group_by(person)
            )
            out.update({(chat_id, u): ts for u, ts in rows if ts is not None})
    return out


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


def is_duplicate(kind: MemberKind, ts: int, near: Sequence[tuple[str, int]]) -> bool:
    """Same kind within the dedup window with no opposite event strictly between (SPEC 2)."""
    for other_kind, other_ts in near:
        if other_kind != kind:
            continue
        lo, hi = sorted((ts, other_ts))
        if not any(k != kind and lo < t < hi for k, t in near):
            return True
    return False
