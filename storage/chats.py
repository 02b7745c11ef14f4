"""Groups and their settings: the chat row (title, tracking start, bot status, linked chat,
settings changed in chat, data version), targets set in chat, migration to a supergroup,
users' names, and the bot's own small state (the update offset)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from storage import rollups
from storage.models import (
    ActivityRow,
    BotState,
    Chat,
    ChatTarget,
    HostEventRow,
    ManualHost,
    MemberCount,
    MembershipEventRow,
    MessageRow,
    User,
)
from storage.sql import chunks, from_ts, insert, insert_many, to_ts

UserTuple = tuple[int, bool, str | None, str | None]  # user_id, is_bot, first_name, username


@dataclass(frozen=True, slots=True)
class ChatInfo:
    chat_id: int
    title: str | None
    type: str
    linked_chat_id: int | None
    tracking_start_utc: datetime | None
    baseline_count: int
    bot_status: str | None
    bot_is_admin: bool
    migrated_to_chat_id: int | None
    timezone: str | None
    language: str | None
    digest_time: str | None
    digest_to: str | None
    data_version: int = 0


async def ensure_chat(conn: AsyncConnection, chat_id: int, title: str | None, type_: str) -> None:
    await conn.execute(
        insert(conn, Chat)
        .values(chat_id=chat_id, title=title, type=type_, baseline_count=0, bot_is_admin=False)
        .on_conflict_do_nothing(index_elements=["chat_id"])
    )
    if title is not None:
        await conn.execute(
            update(Chat)
            .where(Chat.chat_id == chat_id, or_(Chat.title.is_(None), Chat.title != title))
            .values(title=title, type=type_)
        )


async def chat(conn: AsyncConnection, chat_id: int) -> ChatInfo | None:
    return (await chats(conn, [chat_id])).get(chat_id)


async def chats(conn: AsyncConnection, chat_ids: Sequence[int]) -> dict[int, ChatInfo]:
    """The groups' rows (a group with no row is left out)."""
    out = {}
    for part in chunks(sorted(set(chat_ids))):
        for row in (await conn.execute(select(Chat).where(Chat.chat_id.in_(part)))).all():
            m = row._mapping
            start = m["tracking_start_ts"]
            out[m["chat_id"]] = ChatInfo(
                chat_id=m["chat_id"],
                title=m["title"],
                type=m["type"],
                linked_chat_id=m["linked_chat_id"],
                tracking_start_utc=from_ts(start) if start is not None else None,
                baseline_count=m["baseline_count"],
                bot_status=m["bot_status"],
                bot_is_admin=m["bot_is_admin"],
                migrated_to_chat_id=m["migrated_to_chat_id"],
                timezone=m["timezone"],
                language=m["language"],
                digest_time=m["digest_time"],
                digest_to=m["digest_to"],
                data_version=m["data_version"] or 0,
            )
    return out


async def chat_ids(conn: AsyncConnection, *, active_only: bool = True) -> list[int]:
    stmt = select(Chat.chat_id).where(Chat.migrated_to_chat_id.is_(None))
    if active_only:
        stmt = stmt.where(Chat.bot_status.in_(("member", "administrator")))
    return list((await conn.execute(stmt.order_by(Chat.chat_id))).scalars())


async def update_chat(conn: AsyncConnection, chat_id: int, **values: Any) -> None:
    await conn.execute(update(Chat).where(Chat.chat_id == chat_id).values(**values))


async def start_tracking(
    conn: AsyncConnection, chat_id: int, ts_utc: datetime, baseline_count: int
) -> bool:
    """Anchor the baseline once (SPEC 9); later calls change nothing."""
    result = await conn.execute(
        update(Chat)
        .where(Chat.chat_id == chat_id, Chat.tracking_start_ts.is_(None))
        .values(tracking_start_ts=to_ts(ts_utc), baseline_count=baseline_count)
    )
    await bump(conn, chat_id)
    await conn.execute(
        insert(conn, MemberCount).values(chat_id=chat_id, ts=to_ts(ts_utc), count=baseline_count)
    )
    return bool(result.rowcount)


async def bump(conn: AsyncConnection, *chat_ids: int, since_ts: int = rollups.EVERYTHING) -> None:
    """A new data version for these groups' people (every group's, with none named), and
    their daily rollups invalid from what an event at `since_ts` can affect (default: all)."""
    stmt = update(Chat).values(
        data_version=Chat.data_version + 1, rollups_dirty_ts=rollups.dirty_from(since_ts)
    )
    if chat_ids:
        stmt = stmt.where(Chat.chat_id.in_(sorted(chat_ids)))
    await conn.execute(stmt)


async def chat_periods(
    conn: AsyncConnection,
) -> list[tuple[int, str | None, datetime | None, datetime | None, int]]:
    """(chat id, title, first event, last event, membership events) of every group."""
    ev = MembershipEventRow
    stmt = (
        select(Chat.chat_id, Chat.title, func.min(ev.ts), func.max(ev.ts), func.count(ev.id))
        .outerjoin(ev, ev.chat_id == Chat.chat_id)
        .where(Chat.migrated_to_chat_id.is_(None))
        .group_by(Chat.chat_id, Chat.title)
        .order_by(Chat.chat_id)
    )
    rows = (await conn.execute(stmt)).all()
    return [
        (c, t, from_ts(a) if a is not None else None, from_ts(b) if b is not None else None, n)
        for c, t, a, b, n in rows
    ]


# ---- users ----------------------------------------------------------------------------


async def write_users(conn: AsyncConnection, users: list[UserTuple]) -> None:
    await insert_many(
        conn,
        User,
        [{"user_id": u, "is_bot": b, "first_name": f, "username": n} for u, b, f, n in users],
        update_on_conflict=("first_name", "username"),
    )


async def user_names(conn: AsyncConnection, user_ids: Iterable[int]) -> dict[int, str]:
    """First name (or @username) of known users, for host lists."""
    ids = list(user_ids)
    rows = await conn.execute(
        select(User.user_id, User.first_name, User.username).where(User.user_id.in_(ids))
    )
    return {u: f or (f"@{n}" if n else str(u)) for u, f, n in rows}


async def user_profiles(
    conn: AsyncConnection, user_ids: Iterable[int]
) -> dict[int, tuple[str | None, str | None]]:
    """{user id: (display name, username)} of the users known."""
    out: dict[int, tuple[str | None, str | None]] = {}
    for chunk in chunks(sorted(set(user_ids))):
        rows = await conn.execute(
            select(User.user_id, User.first_name, User.username).where(User.user_id.in_(chunk))
        )
        out.update({u: (f, n) for u, f, n in rows})
    return out


# ---- migration ------------------------------------------------------------------------


async def migrate_chat(conn: AsyncConnection, old_id: int, new_id: int) -> bool:
    """Move all history of a group to its supergroup id (SPEC 2).

    Pre-migration message ids are negated, as Telegram Desktop exports them, because
    the supergroup numbers its messages afresh.
    """
    old = (await conn.execute(select(Chat).where(Chat.chat_id == old_id))).first()
    if old is None or old.migrated_to_chat_id == new_id:
        return False
    await conn.execute(
        insert(conn, Chat)
        .values(
            chat_id=new_id,
            title=old.title,
            type="supergroup",
            baseline_count=old.baseline_count,
            linked_chat_id=old.linked_chat_id,
            bot_is_admin=old.bot_is_admin,
            bot_status=old.bot_status,
            tracking_start_ts=old.tracking_start_ts,
            timezone=old.timezone,
            language=old.language,
            digest_time=old.digest_time,
            digest_to=old.digest_to,
        )
        .on_conflict_do_nothing(index_elements=["chat_id"])
    )
    await conn.execute(
        update(Chat)
        .where(Chat.chat_id == new_id)
        .values(
            tracking_start_ts=func.coalesce(
                func.min(Chat.tracking_start_ts, old.tracking_start_ts)
                if conn.dialect.name == "sqlite"
                else func.least(Chat.tracking_start_ts, old.tracking_start_ts),
                old.tracking_start_ts,
            ),
            baseline_count=old.baseline_count,
        )
    )
    for model in (MembershipEventRow, HostEventRow, ManualHost, MemberCount, ChatTarget):
        await conn.execute(update(model).where(model.chat_id == old_id).values(chat_id=new_id))
    await conn.execute(
        update(MessageRow)
        .where(MessageRow.chat_id == old_id)
        .values(
            chat_id=new_id,
            message_id=-MessageRow.message_id,
            reply_to_message_id=-MessageRow.reply_to_message_id,
        )
    )
    await conn.execute(
        update(ActivityRow)
        .where(ActivityRow.chat_id == old_id)
        .values(chat_id=new_id, message_id=-ActivityRow.message_id)
    )
    await conn.execute(
        update(Chat)
        .where(Chat.chat_id == old_id)
        .values(migrated_to_chat_id=new_id, bot_status="migrated")
    )
    await rollups.drop(conn, old_id)
    await bump(conn, new_id)
    return True


async def resolve_chat_id(conn: AsyncConnection, chat_id: int) -> int:
    """Follow a group's migration to its supergroup, if any."""
    target = (
        await conn.execute(select(Chat.migrated_to_chat_id).where(Chat.chat_id == chat_id))
    ).scalar()
    return target if target is not None else chat_id


# ---- targets set in chat --------------------------------------------------------------


async def chat_targets(
    conn: AsyncConnection, chat_ids: Sequence[int]
) -> dict[int, dict[str, tuple[float | None, str | None]]]:
    """Per group, metric -> (value or None when switched off, range) as set with /settarget."""
    out: dict[int, dict[str, tuple[float | None, str | None]]] = {c: {} for c in chat_ids}
    for part in chunks(sorted(set(chat_ids))):
        rows = await conn.execute(
            select(ChatTarget.chat_id, ChatTarget.metric, ChatTarget.value, ChatTarget.range)
            .where(ChatTarget.chat_id.in_(part))
            .order_by(ChatTarget.chat_id, ChatTarget.metric)
        )
        for c, m, v, r in rows:
            out[c][m] = (v, r)
    return out


async def set_chat_target(
    conn: AsyncConnection,
    chat_id: int,
    metric: str,
    value: float | None,
    rng: str | None,
    by: int,
    ts_utc: datetime,
) -> None:
    stmt = insert(conn, ChatTarget).values(
        chat_id=chat_id, metric=metric, value=value, range=rng, set_by=by, ts=to_ts(ts_utc)
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["chat_id", "metric"],
        set_={"value": value, "range": rng, "set_by": by, "ts": to_ts(ts_utc)},
    )
    await conn.execute(stmt)


# ---- the bot's own state (update offset) ----------------------------------------------


async def get_state(conn: AsyncConnection, key: str) -> int | None:
    value: int | None = (
        await conn.execute(select(BotState.value).where(BotState.key == key))
    ).scalar()
    return value


async def set_state(conn: AsyncConnection, key: str, value: int) -> None:
    stmt = insert(conn, BotState).values(key=key, value=value)
    stmt = stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value})
    await conn.execute(stmt)
