"""Posts and activity: message rows without their text, and the response- and
interaction-level activity each post causes (SPEC 4)."""

from __future__ import annotations

from bisect import insort
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    and_,
    func,
    literal_column,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.classify import answer_marks, reply_marks
from bot.events import ActivityMark, Level, MemberKind, Post, ReplyTarget, Role
from storage import rollups
from storage.membership import event_times, write_changes
from storage.models import ActivityRow, MembershipEventRow, MessageRow
from storage.sql import chunks, from_ts, insert_many, to_ts


async def write_posts(
    conn: AsyncConnection,
    posts: Sequence[tuple[Post, ReplyTarget | None, int]],
    dirty: rollups.Marks | None = None,
) -> int:
    """Store posts not stored yet, in order, with the activity each causes given the
    posts before it; returns how many were new. Two reads for all groups, then
    executemany. The rollups' dirty marks go into `dirty` (written at the end of the
    batch, once), or are written now."""
    members = [(p, r, w) for p, r, w in posts if p.role == Role.MEMBER and p.sender_id is not None]
    own = {(p.chat_id, p.message_id) for p, _, _ in posts}
    # one read: which posts are stored already, and the stored reply targets
    targets = await _stored_targets(
        conn, own | {(p.chat_id, r.message_id) for p, r, _ in members if r is not None}
    )
    stored = own & targets.keys()
    recent = await _answer_candidates(conn, [(p, w) for p, r, w in members if r is None])
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
        await insert_many(conn, MessageRow, list(rows.values()))
    if activity:
        await insert_many(conn, ActivityRow, activity)
    for flag, keys in flags.items():
        for chunk in chunks(sorted(keys)):
            await conn.execute(
                update(MessageRow)
                .where(tuple_(MessageRow.chat_id, MessageRow.message_id).in_(chunk))
                .values({flag: True})
            )
    now = rollups.Marks() if dirty is None else dirty
    for a in activity:  # activity changes the days it is on
        now.changed(a["chat_id"], a["ts"])
    for row in rows.values():
        if row["role"] == Role.MEMBER and row["sender_id"] is not None:
            now.posted(row["chat_id"], row["sender_id"], row["ts"])
    if dirty is None:
        await write_marks(conn, now)
    return len(rows)


async def write_marks(conn: AsyncConnection, marks: rollups.Marks) -> None:
    """The rollups' dirty marks: each group's from its earliest change; everything where a
    member posted before their first join or leave, which can make them a member from
    before tracking (SPEC 2)."""
    first = await event_times(conn, sorted(marks.first_posts), func.min)
    for (chat_id, user_id), ts in first.items():
        if marks.first_posts[(chat_id, user_id)] < ts:
            marks.changed(chat_id, rollups.EVERYTHING, version=True)
    await write_changes(conn, marks)


async def _stored_targets(
    conn: AsyncConnection, keys: set[tuple[int, int]]
) -> dict[tuple[int, int], ReplyTarget]:
    """Stored messages, by (chat_id, message_id), as reply targets: the role at the time
    they were sent."""
    out: dict[tuple[int, int], ReplyTarget] = {}
    for chunk in chunks(sorted(keys)):
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
    conn: AsyncConnection, answering: Sequence[tuple[Post, int]]
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
            MessageRow.thread_id,
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
    for chat_id, m, t, sender, role, q, thread in rows:
        out.setdefault(chat_id, []).append(
            Post(chat_id, m, from_ts(t), Role(role), sender, is_question=q, thread_id=thread)
        )
    return out


async def activity_marks(
    conn: AsyncConnection, chat_id: int, start_utc: datetime, end_utc: datetime
) -> list[ActivityMark]:
    rows = await conn.execute(
        select(
            ActivityRow.user_id, ActivityRow.level, ActivityRow.ts, ActivityRow.message_id
        ).where(
            ActivityRow.chat_id == chat_id,
            ActivityRow.ts >= to_ts(start_utc),
            ActivityRow.ts < to_ts(end_utc),
        )
    )
    return [ActivityMark(chat_id, u, Level(level), from_ts(ts), mid) for u, level, ts, mid in rows]


async def active_user_counts(
    conn: AsyncConnection, day_bounds: dict[int, Sequence[tuple[datetime, datetime]]]
) -> dict[int, dict[tuple[int, str], int]]:
    """Per group, {(day index, level): distinct active users} for its local days.

    One round trip for all the groups, one row per group and day whatever the range (a
    column per day would hit SQLite's 2,000 and PostgreSQL's 1,664 columns); each count is
    an index range scan on (chat, level, ts, user). The groups and day bounds are integers
    written into the statement, not parameters, so no range meets a bind-parameter limit;
    the statement is plain text, so it is not compiled again for each range (a construct
    with literal values is)."""
    out: dict[int, dict[tuple[int, str], int]] = {c: {} for c in day_bounds}
    rows = ", ".join(
        f"({int(c)}, {i}, {int(to_ts(lo))}, {int(to_ts(hi))})"
        for c, bounds in day_bounds.items()
        for i, (lo, hi) in enumerate(bounds)
    )
    if not rows:
        return out
    levels = [str(level) for level in Level]
    counts = ", ".join(
        "(SELECT count(DISTINCT a.user_id) FROM activity a WHERE a.chat_id = days.c"
        f" AND a.level = :level{n} AND a.ts >= days.lo AND a.ts < days.hi)"
        for n in range(len(levels))
    )
    stmt = text(
        f"WITH days (c, i, lo, hi) AS (VALUES {rows}) SELECT days.c, days.i, {counts} FROM days"
    )
    params = {f"level{n}": level for n, level in enumerate(levels)}
    for c, i, *ns in (await conn.execute(stmt, params)).all():
        out[c].update({(i, level): n for level, n in zip(levels, ns, strict=True) if n})
    return out


async def newcomer_activity(
    conn: AsyncConnection, chat_id: int, start_utc: datetime, end_utc: datetime
) -> list[ActivityMark]:
    """The activity marks, from `start_utc` on, of the people who joined in [start, end):
    one index range scan per level, the newcomers picked out by the database."""
    joined = select(MembershipEventRow.user_id).where(
        MembershipEventRow.chat_id == chat_id,
        MembershipEventRow.kind == MemberKind.JOIN,
        MembershipEventRow.ts >= to_ts(start_utc),
        MembershipEventRow.ts < to_ts(end_utc),
    )
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
    return [ActivityMark(chat_id, u, Level(level), from_ts(ts), mid) for u, level, ts, mid in rows]


async def member_message_counts(
    conn: AsyncConnection, chat_id: int, start_utc: datetime, end_utc: datetime, bucket_s: int
) -> list[tuple[datetime, int]]:
    """Member messages in [start, end) counted per `bucket_s` of UTC time, as (bucket
    start, count). Every zone's offset is a multiple of 15 minutes, so a 900 s bucket
    lies within one local hour."""
    # a literal, not a parameter: PostgreSQL matches GROUP BY to the select's expression
    bucket = MessageRow.ts - MessageRow.ts % literal_column(str(int(bucket_s)))
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
    conn: AsyncConnection, chat_id: int, start_utc: datetime, end_utc: datetime, within_s: int
) -> list[tuple[datetime, int]]:
    """Host posts in [start, end), each with the distinct members who replied to it
    within 0..within_s seconds (replies after `end` included)."""
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
    for chunk in chunks(list(post_ts)):  # in time order: together, one pass
        replies = await conn.execute(
            select(MessageRow.reply_to_message_id, MessageRow.sender_id, MessageRow.ts).where(
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
        "thread_id": post.thread_id,
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
