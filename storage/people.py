"""The history of a group's people the metrics read: its joins and leaves, admin changes,
bots, hosts set in chat and first posts as a member, as our own types; of everyone, or of
the people with events since a time (for the days from then), for many groups at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal, select, text, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.events import HostChange, MemberKind, MembershipEvent, Role
from storage.models import Chat, HostEventRow, ManualHost, MembershipEventRow, MessageRow, User
from storage.sql import chunks, from_ts

CHUNK = 400  # groups read by one statement (an IN list any database takes)


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


async def history(conn: AsyncConnection, chat_id: int, since_ts: int | None = None) -> HistoryRows:
    """The group's people; with `since_ts`, only the people with a join, leave or admin
    change from then on (every event of theirs), for the days from then (rollups)."""
    if since_ts is not None:
        return (await recent_histories(conn, {chat_id: since_ts}))[chat_id]
    chat = (await conn.execute(select(Chat).where(Chat.chat_id == chat_id))).first()
    rows = await conn.execute(
        select(*_EVENT_COLUMNS)
        .where(MembershipEventRow.chat_id == chat_id)
        .order_by(MembershipEventRow.ts, MembershipEventRow.seq, MembershipEventRow.id)
    )
    membership = [_event(r) for r in rows]
    host_rows = await conn.execute(
        select(*_HOST_COLUMNS)
        .where(HostEventRow.chat_id == chat_id)
        .order_by(HostEventRow.ts, HostEventRow.seq, HostEventRow.id)
    )
    host_changes = [_host_change(r) for r in host_rows]
    who = (
        select(MembershipEventRow.user_id)
        .where(MembershipEventRow.chat_id == chat_id)
        .group_by(MembershipEventRow.user_id)
        .subquery()
    )
    first_member_post = (
        select(func.min(MessageRow.ts))
        .where(
            MessageRow.chat_id == chat_id,
            MessageRow.sender_id == who.c.user_id,
            MessageRow.role == Role.MEMBER,
        )
        .scalar_subquery()
    )
    firsts = await conn.execute(select(who.c.user_id, first_member_post))
    first_post = {u: from_ts(ts) for u, ts in firsts if ts is not None}
    bots, manual = await _marked(conn, [chat_id])
    start = chat.tracking_start_ts if chat is not None else None
    return _rows(
        start,
        chat.baseline_count if chat is not None else 0,
        membership,
        host_changes,
        bots,
        manual.get(chat_id, set()),
        first_post,
    )


_EVENT_COLUMNS = (
    MembershipEventRow.chat_id,
    MembershipEventRow.user_id,
    MembershipEventRow.kind,
    MembershipEventRow.ts,
    MembershipEventRow.seq,
    MembershipEventRow.source,
    MembershipEventRow.invite_link,
    MembershipEventRow.join_source,
    MembershipEventRow.inviter_id,
)
_HOST_COLUMNS = (
    HostEventRow.chat_id,
    HostEventRow.user_id,
    HostEventRow.ts,
    HostEventRow.is_host,
    HostEventRow.seq,
    HostEventRow.source,
)


def _event(r: Any) -> MembershipEvent:
    c, u, k, ts, seq, src, link, js, inv = r
    return MembershipEvent(c, u, MemberKind(k), from_ts(ts), seq, src, link, js, inv)


def _host_change(r: Any) -> HostChange:
    c, u, ts, h, seq, src = r
    return HostChange(c, u, from_ts(ts), h, seq, src)


async def _marked(
    conn: AsyncConnection, chat_ids: Sequence[int]
) -> tuple[set[int], dict[int, set[int]]]:
    """Every bot (few, by a partial index), and the hosts set in chat of each group."""
    rows = await conn.execute(
        union_all(
            select(User.user_id, literal(True), literal(0)).where(User.is_bot),
            select(ManualHost.user_id, literal(False), ManualHost.chat_id).where(
                ManualHost.chat_id.in_(chat_ids)
            ),
        )
    )
    bots: set[int] = set()
    manual: dict[int, set[int]] = {}
    for user_id, is_bot, chat_id in rows:
        if is_bot:
            bots.add(user_id)
        else:
            manual.setdefault(chat_id, set()).add(user_id)
    return bots, manual


def _rows(
    start: int | None,
    baseline: int,
    membership: list[MembershipEvent],
    host_changes: list[HostChange],
    bots: set[int],
    manual: set[int],
    first_post: dict[int, datetime],
) -> HistoryRows:
    people = {e.user_id for e in membership} | {h.user_id for h in host_changes}
    people |= {e.inviter_id for e in membership if e.inviter_id is not None}
    return HistoryRows(
        tracking_start_utc=from_ts(start) if start is not None else None,
        baseline_count=baseline,
        membership=membership,
        host_changes=host_changes,
        bots=frozenset(bots & people),
        manual_hosts=frozenset(manual),
        first_post_utc=first_post,
    )


async def recent_histories(conn: AsyncConnection, since: dict[int, int]) -> dict[int, HistoryRows]:
    """For each group, the people with a join, leave or admin change from its time on
    (every event of theirs), for the days from then (rollups): one statement per table
    for all the groups. The recent people are found by the (group, time, person) index
    and their events read by the (group, person, time) index, per group and person."""
    if not since:
        return {}
    if len(since) > CHUNK:
        out: dict[int, HistoryRows] = {}
        for part in chunks(sorted(since), CHUNK):
            out.update(await recent_histories(conn, {c: since[c] for c in part}))
        return out
    ids = sorted(since)
    values = ", ".join(f"({int(c)}, {int(ts)})" for c, ts in sorted(since.items()))
    # the recent people by the (group, time, person) index, then each one's events by the
    # (group, person, time) index: PostgreSQL would hash the whole table for a join (a
    # LATERAL subquery it cannot pull up, OFFSET 0, makes it loop), SQLite build a
    # temporary index of it (INDEXED BY)
    if conn.dialect.name == "postgresql":
        who = (
            f"WITH since (chat_id, ts) AS (VALUES {values}), who (chat_id, user_id) AS ("
            "SELECT m.chat_id, m.user_id FROM since CROSS JOIN LATERAL (SELECT chat_id,"
            " user_id FROM membership_events m WHERE m.chat_id = since.chat_id"
            " AND m.ts >= since.ts OFFSET 0) m UNION SELECT h.chat_id, h.user_id FROM since"
            " CROSS JOIN LATERAL (SELECT chat_id, user_id FROM host_events h"
            " WHERE h.chat_id = since.chat_id AND h.ts >= since.ts OFFSET 0) h) "
        )
        events_of = (
            "CROSS JOIN LATERAL (SELECT * FROM membership_events x"
            " WHERE x.chat_id = who.chat_id AND x.user_id = who.user_id OFFSET 0) e"
        )
    else:
        who = (
            f"WITH since (chat_id, ts) AS (VALUES {values}), who (chat_id, user_id) AS ("
            "SELECT m.chat_id, m.user_id FROM since JOIN membership_events m"
            " ON m.chat_id = since.chat_id AND m.ts >= since.ts"
            " UNION SELECT h.chat_id, h.user_id FROM since JOIN host_events h"
            " ON h.chat_id = since.chat_id AND h.ts >= since.ts) "
        )
        events_of = (
            "CROSS JOIN membership_events e INDEXED BY ix_membership_events_chat_id_user_id_ts"
            " ON e.chat_id = who.chat_id AND e.user_id = who.user_id"
        )
    # with each event, the person's first post as a member (only a person with a join or
    # leave can have been in before tracking, SPEC 2); fetched at once (a row at a time
    # costs more than the statement) and sorted here (a database sort of every group's
    # rows together costs more than a sort per group)
    result = await conn.execute(
        text(
            who + "SELECT e.chat_id, e.user_id, e.kind, e.ts, e.seq, e.id, e.source,"
            " e.invite_link, e.join_source, e.inviter_id, (SELECT min(x.ts) FROM messages x"
            " WHERE x.chat_id = e.chat_id AND x.sender_id = e.user_id AND x.role = :member)"
            f" FROM who {events_of}"
        ),
        {"member": str(Role.MEMBER)},
    )
    rows = sorted(result.all(), key=lambda r: (r[0], r[3], r[4], r[5]))  # group, time, seq, id
    membership: dict[int, list[MembershipEvent]] = {c: [] for c in ids}
    first_post: dict[int, dict[int, datetime]] = {c: {} for c in ids}
    kinds = {str(k): k for k in MemberKind}
    for c, u, k, ts, seq, _, src, link, js, inv, posted in rows:
        membership[c].append(MembershipEvent(c, u, kinds[k], from_ts(ts), seq, src, link, js, inv))
        if posted is not None:
            first_post[c][u] = from_ts(posted)
    host_changes: dict[int, list[HostChange]] = {c: [] for c in ids}
    host_rows = await conn.execute(
        select(*_HOST_COLUMNS)
        .where(HostEventRow.chat_id.in_(ids))
        .order_by(HostEventRow.chat_id, HostEventRow.ts, HostEventRow.seq, HostEventRow.id)
    )
    for r in host_rows.all():
        host_changes[r[0]].append(_host_change(r))
    starts = await conn.execute(
        select(Chat.chat_id, Chat.tracking_start_ts, Chat.baseline_count).where(
            Chat.chat_id.in_(ids)
        )
    )
    chat_rows = {c: (start, baseline) for c, start, baseline in starts}
    bots, manual = await _marked(conn, ids)
    out = {}
    for c in ids:
        # a group's few admin changes: all read, the recent people's kept
        recent = {e.user_id for e in membership[c]} | {
            h.user_id for h in host_changes[c] if h.ts_utc >= from_ts(since[c])
        }
        start, baseline = chat_rows.get(c, (None, 0))
        out[c] = _rows(
            start,
            baseline,
            membership[c],
            [h for h in host_changes[c] if h.user_id in recent],
            bots,
            manual.get(c, set()),
            first_post[c],
        )
    return out
