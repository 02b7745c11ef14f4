"""The only module that writes SQL: record events, and read back what the metrics need.

Every write is idempotent (unique keys + ON CONFLICT DO NOTHING on SQLite and PostgreSQL),
so the same update delivered twice changes nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, and_, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.classify import answer_marks, reply_marks
from bot.events import (
    ActivityMark,
    HostChange,
    Level,
    MemberKind,
    MembershipEvent,
    Post,
    ReplyTarget,
    Role,
)
from storage import db
from storage.models import (
    ActivityRow,
    Base,
    BotState,
    Chat,
    ChatTarget,
    Claim,
    HostEventRow,
    ManualHost,
    MemberCount,
    MembershipEventRow,
    MessageRow,
    User,
)

DEDUP_WINDOW_S = 60  # SPEC 2: the same join/leave seen from two sources within 60 s


def to_ts(dt: datetime) -> int:
    return int(dt.timestamp())


def from_ts(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


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


class Repo:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        # what readers derived from a group's rows, keyed by its data_version (see Chat)
        self.memo: OrderedDict[Any, Any] = OrderedDict()

    @classmethod
    async def open(cls, url: str, *, upgrade: bool = True) -> Repo:
        engine = db.make_engine(url)
        if upgrade:
            await db.upgrade(engine)
        return cls(engine)

    async def close(self) -> None:
        await self.engine.dispose()

    def _insert(self, table: Any) -> Any:
        tbl: Table = table.__table__
        return (pg_insert if self.dialect == "postgresql" else sqlite_insert)(tbl)

    # ---- chats and users -------------------------------------------------------------

    async def ensure_chat(self, chat_id: int, title: str | None, type_: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                self._insert(Chat)
                .values(
                    chat_id=chat_id, title=title, type=type_, baseline_count=0, bot_is_admin=False
                )
                .on_conflict_do_nothing(index_elements=["chat_id"])
            )
            if title is not None:
                await conn.execute(
                    update(Chat)
                    .where(Chat.chat_id == chat_id, or_(Chat.title.is_(None), Chat.title != title))
                    .values(title=title, type=type_)
                )

    async def chat(self, chat_id: int) -> ChatInfo | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(Chat).where(Chat.chat_id == chat_id))).first()
        if row is None:
            return None
        m = row._mapping
        start = m["tracking_start_ts"]
        return ChatInfo(
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

    async def chat_ids(self, *, active_only: bool = True) -> list[int]:
        stmt = select(Chat.chat_id).where(Chat.migrated_to_chat_id.is_(None))
        if active_only:
            stmt = stmt.where(Chat.bot_status.in_(("member", "administrator")))
        async with self.engine.connect() as conn:
            return list((await conn.execute(stmt.order_by(Chat.chat_id))).scalars())

    async def update_chat(self, chat_id: int, **values: Any) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(Chat).where(Chat.chat_id == chat_id).values(**values))

    async def start_tracking(self, chat_id: int, ts_utc: datetime, baseline_count: int) -> bool:
        """Anchor the baseline once (SPEC 9); later calls change nothing."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(Chat)
                .where(Chat.chat_id == chat_id, Chat.tracking_start_ts.is_(None))
                .values(tracking_start_ts=to_ts(ts_utc), baseline_count=baseline_count)
            )
            await self._bump(conn, chat_id)
            await conn.execute(
                self._insert(MemberCount).values(
                    chat_id=chat_id, ts=to_ts(ts_utc), count=baseline_count
                )
            )
            return bool(result.rowcount)

    async def record_member_count(self, chat_id: int, ts_utc: datetime, count: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                self._insert(MemberCount).values(chat_id=chat_id, ts=to_ts(ts_utc), count=count)
            )

    async def record_users(
        self, users: Iterable[tuple[int, bool, str | None, str | None]]
    ) -> None:
        """(user_id, is_bot, first_name, username); names kept for host lists and imports."""
        rows = [
            {"user_id": u, "is_bot": b, "first_name": f, "username": n} for u, b, f, n in users
        ]
        if not rows:
            return
        stmt = self._insert(User)
        stmt = stmt.on_conflict_do_update(
            index_elements=["user_id"],
            set_={"first_name": stmt.excluded.first_name, "username": stmt.excluded.username},
        )
        async with self.engine.begin() as conn:
            await conn.execute(stmt, rows)

    async def user_names(self, user_ids: Iterable[int]) -> dict[int, str]:
        """First name (or @username) of known users, for host lists."""
        ids = list(user_ids)
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(User.user_id, User.first_name, User.username).where(User.user_id.in_(ids))
            )
            return {u: f or (f"@{n}" if n else str(u)) for u, f, n in rows}

    # ---- membership ------------------------------------------------------------------

    async def record_membership(self, ev: MembershipEvent) -> bool:
        """Store a join/leave unless the same one was seen from another source (SPEC 2)."""
        ts = to_ts(ev.ts_utc)
        async with self.engine.begin() as conn:
            near = (
                await conn.execute(
                    select(MembershipEventRow.kind, MembershipEventRow.ts).where(
                        MembershipEventRow.chat_id == ev.chat_id,
                        MembershipEventRow.user_id == ev.user_id,
                        MembershipEventRow.ts.between(ts - DEDUP_WINDOW_S, ts + DEDUP_WINDOW_S),
                    )
                )
            ).all()
            if is_duplicate(ev.kind, ts, [(k, t) for k, t in near]):
                return False
            result = await conn.execute(
                self._insert(MembershipEventRow)
                .values(
                    chat_id=ev.chat_id,
                    user_id=ev.user_id,
                    kind=str(ev.kind),
                    ts=ts,
                    seq=ev.seq,
                    source=ev.source,
                    invite_link=ev.invite_link,
                )
                .on_conflict_do_nothing()
            )
            if result.rowcount:
                await self._bump(conn, ev.chat_id)
            return bool(result.rowcount)

    async def _bump(self, conn: AsyncConnection, chat_id: int | None = None) -> None:
        """A new data version for one group's people (every group's, with None)."""
        stmt = update(Chat).values(data_version=Chat.data_version + 1)
        if chat_id is not None:
            stmt = stmt.where(Chat.chat_id == chat_id)
        await conn.execute(stmt)

    # ---- hosts -----------------------------------------------------------------------

    async def _hosts_now(self, conn: AsyncConnection, chat_id: int) -> set[int]:
        rows = await conn.execute(
            select(HostEventRow.user_id, HostEventRow.is_host)
            .where(HostEventRow.chat_id == chat_id)
            .order_by(HostEventRow.ts, HostEventRow.seq, HostEventRow.id)
        )
        state: dict[int, bool] = {}
        for user_id, is_host in rows:
            state[user_id] = is_host
        return {u for u, h in state.items() if h}

    async def admin_hosts(self, chat_id: int) -> set[int]:
        """Users who are admins/creator now, as last seen from Telegram."""
        async with self.engine.connect() as conn:
            return await self._hosts_now(conn, chat_id)

    async def set_host(self, change: HostChange) -> bool:
        """Record a change of admin status; nothing when the status is already that."""
        async with self.engine.begin() as conn:
            current = await self._hosts_now(conn, change.chat_id)
            if (change.user_id in current) == change.is_host:
                return False
            await self._insert_host_changes(conn, [change])
            return True

    async def sync_admins(self, chat_id: int, admin_ids: set[int], ts_utc: datetime) -> None:
        """Make the stored admin set equal Telegram's getChatAdministrators answer."""
        async with self.engine.begin() as conn:
            current = await self._hosts_now(conn, chat_id)
            changes = [
                HostChange(chat_id, u, ts_utc, True, source="admins")
                for u in sorted(admin_ids - current)
            ] + [
                HostChange(chat_id, u, ts_utc, False, source="admins")
                for u in sorted(current - admin_ids)
            ]
            await self._insert_host_changes(conn, changes)

    async def _insert_host_changes(
        self, conn: AsyncConnection, changes: Sequence[HostChange]
    ) -> None:
        if not changes:
            return
        await self._bump(conn, changes[0].chat_id)
        await conn.execute(
            self._insert(HostEventRow).on_conflict_do_nothing(),
            [
                {
                    "chat_id": c.chat_id,
                    "user_id": c.user_id,
                    "ts": to_ts(c.ts_utc),
                    "seq": c.seq,
                    "is_host": c.is_host,
                    "source": c.source,
                }
                for c in changes
            ],
        )

    async def manual_hosts(self, chat_id: int) -> set[int]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(ManualHost.user_id).where(ManualHost.chat_id == chat_id)
            )
            return set(rows.scalars())

    async def set_manual_host(
        self, chat_id: int, user_id: int, on: bool, ts_utc: datetime
    ) -> None:
        async with self.engine.begin() as conn:
            await self._bump(conn, chat_id)
            if on:
                await conn.execute(
                    self._insert(ManualHost)
                    .values(chat_id=chat_id, user_id=user_id, added_ts=to_ts(ts_utc))
                    .on_conflict_do_nothing()
                )
            else:
                await conn.execute(
                    delete(ManualHost).where(
                        ManualHost.chat_id == chat_id, ManualHost.user_id == user_id
                    )
                )

    # ---- posts and activity ----------------------------------------------------------

    async def record_post(
        self, post: Post, reply: ReplyTarget | None, discussion_window_s: int
    ) -> bool:
        """Store a post and the activity it causes (SPEC 4); False if already stored."""
        ts = to_ts(post.ts_utc)
        async with self.engine.begin() as conn:
            result = await conn.execute(
                self._insert(MessageRow)
                .values(
                    chat_id=post.chat_id,
                    message_id=post.message_id,
                    ts=ts,
                    role=str(post.role),
                    sender_id=post.sender_id,
                    sender_chat_id=post.sender_chat_id,
                    reply_to_message_id=reply.message_id if reply else None,
                    reply_to_sender_id=reply.sender_id if reply else None,
                    is_question=post.is_question,
                    is_response=False,
                    is_discussion=False,
                )
                .on_conflict_do_nothing()
            )
            if not result.rowcount:
                return False
            if post.role != Role.MEMBER or post.sender_id is None:
                return True
            if reply is not None:
                marks = await self._reply_marks(conn, post, reply)
            else:
                marks = await self._answer_marks(conn, post, discussion_window_s)
            await self._store_marks(conn, post, marks)
            return True

    async def _reply_marks(
        self, conn: AsyncConnection, post: Post, reply: ReplyTarget
    ) -> list[ActivityMark]:
        stored = (
            await conn.execute(
                select(MessageRow.role, MessageRow.sender_id, MessageRow.ts).where(
                    MessageRow.chat_id == post.chat_id,
                    MessageRow.message_id == reply.message_id,
                )
            )
        ).first()
        if stored is not None:  # the role at the time the target was sent wins
            reply = ReplyTarget(
                reply.message_id, from_ts(stored.ts), Role(stored.role), stored.sender_id
            )
        return reply_marks(post, reply)

    async def _answer_marks(
        self, conn: AsyncConnection, post: Post, window_s: int
    ) -> list[ActivityMark]:
        ts, mid = to_ts(post.ts_utc), post.message_id
        before_post = or_(
            MessageRow.ts < ts, and_(MessageRow.ts == ts, MessageRow.message_id < mid)
        )
        rows = await conn.execute(
            select(
                MessageRow.message_id,
                MessageRow.ts,
                MessageRow.sender_id,
                MessageRow.role,
                MessageRow.is_question,
            )
            .where(
                MessageRow.chat_id == post.chat_id,
                MessageRow.ts >= ts - window_s,
                before_post,
                or_(
                    MessageRow.role == Role.HOST,
                    and_(MessageRow.is_question, MessageRow.role == Role.MEMBER),
                ),
            )
            .order_by(MessageRow.ts, MessageRow.message_id)
        )
        recent = [
            Post(post.chat_id, m, from_ts(t), Role(role), sender, is_question=q)
            for m, t, sender, role, q in rows
        ]
        return answer_marks(post, recent, window_s)

    async def _store_marks(
        self, conn: AsyncConnection, post: Post, marks: Sequence[ActivityMark]
    ) -> None:
        if not marks:
            return
        await conn.execute(
            self._insert(ActivityRow).on_conflict_do_nothing(),
            [
                {
                    "chat_id": m.chat_id,
                    "level": str(m.level),
                    "message_id": m.message_id,
                    "user_id": m.user_id,
                    "ts": to_ts(m.ts_utc),
                }
                for m in marks
            ],
        )
        flag = "is_response" if marks[0].level == Level.RESPONSE else "is_discussion"
        await conn.execute(
            update(MessageRow)
            .where(
                MessageRow.chat_id == post.chat_id,
                MessageRow.message_id.in_([m.message_id for m in marks]),
            )
            .values({flag: True})
        )

    async def activity_marks(
        self, chat_id: int, start_utc: datetime, end_utc: datetime
    ) -> list[ActivityMark]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(
                    ActivityRow.user_id, ActivityRow.level, ActivityRow.ts, ActivityRow.message_id
                ).where(
                    ActivityRow.chat_id == chat_id,
                    ActivityRow.ts >= to_ts(start_utc),
                    ActivityRow.ts < to_ts(end_utc),
                )
            )
            return [
                ActivityMark(chat_id, u, Level(level), from_ts(ts), mid)
                for u, level, ts, mid in rows
            ]

    async def active_user_counts(
        self, chat_id: int, day_bounds: Sequence[tuple[datetime, datetime]]
    ) -> dict[tuple[int, str], int]:
        """{(day index, level): distinct active users} for consecutive local days.

        One round trip; each count is an index range scan on (chat, level, ts, user)."""
        keys = [(i, str(level)) for i in range(len(day_bounds)) for level in Level]
        if not keys:
            return {}
        counts = [
            select(func.count(ActivityRow.user_id.distinct()))
            .where(
                ActivityRow.chat_id == chat_id,
                ActivityRow.level == level,
                ActivityRow.ts >= to_ts(day_bounds[i][0]),
                ActivityRow.ts < to_ts(day_bounds[i][1]),
            )
            .scalar_subquery()
            for i, level in keys
        ]
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(*counts))).one()
        return {key: n for key, n in zip(keys, row, strict=True) if n}

    # ---- migration -------------------------------------------------------------------

    async def migrate_chat(self, old_id: int, new_id: int) -> bool:
        """Move all history of a group to its supergroup id (SPEC 2).

        Pre-migration message ids are negated, as Telegram Desktop exports them, because
        the supergroup numbers its messages afresh.
        """
        async with self.engine.begin() as conn:
            old = (await conn.execute(select(Chat).where(Chat.chat_id == old_id))).first()
            if old is None or old.migrated_to_chat_id == new_id:
                return False
            await conn.execute(
                self._insert(Chat)
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
                        if self.dialect == "sqlite"
                        else func.least(Chat.tracking_start_ts, old.tracking_start_ts),
                        old.tracking_start_ts,
                    ),
                    baseline_count=old.baseline_count,
                )
            )
            for model in (MembershipEventRow, HostEventRow, ManualHost, MemberCount, ChatTarget):
                await conn.execute(
                    update(model).where(model.chat_id == old_id).values(chat_id=new_id)
                )
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
            await self._bump(conn, new_id)
            return True

    async def resolve_chat_id(self, chat_id: int) -> int:
        """Follow a group's migration to its supergroup, if any."""
        async with self.engine.connect() as conn:
            target = (
                await conn.execute(select(Chat.migrated_to_chat_id).where(Chat.chat_id == chat_id))
            ).scalar()
        return target if target is not None else chat_id

    # ---- targets set in chat ----------------------------------------------------------

    async def chat_targets(self, chat_id: int) -> dict[str, tuple[float | None, str | None]]:
        """metric -> (value or None when switched off, range) as set with /settarget."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(ChatTarget.metric, ChatTarget.value, ChatTarget.range).where(
                    ChatTarget.chat_id == chat_id
                )
            )
            return {m: (v, r) for m, v, r in rows}

    async def set_chat_target(
        self,
        chat_id: int,
        metric: str,
        value: float | None,
        rng: str | None,
        by: int,
        ts_utc: datetime,
    ) -> None:
        stmt = self._insert(ChatTarget).values(
            chat_id=chat_id, metric=metric, value=value, range=rng, set_by=by, ts=to_ts(ts_utc)
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["chat_id", "metric"],
            set_={"value": value, "range": rng, "set_by": by, "ts": to_ts(ts_utc)},
        )
        async with self.engine.begin() as conn:
            await conn.execute(stmt)

    # ---- reading history -------------------------------------------------------------

    async def history(self, chat_id: int) -> HistoryRows:
        async with self.engine.connect() as conn:
            chat = (await conn.execute(select(Chat).where(Chat.chat_id == chat_id))).first()
            mem = await conn.execute(
                select(
                    MembershipEventRow.user_id,
                    MembershipEventRow.kind,
                    MembershipEventRow.ts,
                    MembershipEventRow.seq,
                    MembershipEventRow.source,
                    MembershipEventRow.invite_link,
                )
                .where(MembershipEventRow.chat_id == chat_id)
                .order_by(MembershipEventRow.ts, MembershipEventRow.seq, MembershipEventRow.id)
            )
            membership = [
                MembershipEvent(chat_id, u, MemberKind(k), from_ts(ts), seq, src, link)
                for u, k, ts, seq, src, link in mem
            ]
            hosts = await conn.execute(
                select(
                    HostEventRow.user_id,
                    HostEventRow.ts,
                    HostEventRow.is_host,
                    HostEventRow.seq,
                    HostEventRow.source,
                )
                .where(HostEventRow.chat_id == chat_id)
                .order_by(HostEventRow.ts, HostEventRow.seq, HostEventRow.id)
            )
            host_changes = [
                HostChange(chat_id, u, from_ts(ts), h, seq, src) for u, ts, h, seq, src in hosts
            ]
            people_with_events = (
                select(MembershipEventRow.user_id)
                .where(MembershipEventRow.chat_id == chat_id)
                .group_by(MembershipEventRow.user_id)
                .subquery()
            )
            first_member_post = (
                select(func.min(MessageRow.ts))
                .where(
                    MessageRow.chat_id == chat_id,
                    MessageRow.sender_id == people_with_events.c.user_id,
                    MessageRow.role == Role.MEMBER,
                )
                .scalar_subquery()
            )
            firsts = await conn.execute(select(people_with_events.c.user_id, first_member_post))
            first_post = {u: from_ts(ts) for u, ts in firsts if ts is not None}
            people = {e.user_id for e in membership} | {h.user_id for h in host_changes}
            bots = await conn.execute(select(User.user_id).where(User.is_bot))
            bot_ids = frozenset(b for b in bots.scalars() if b in people)
            manual = await conn.execute(
                select(ManualHost.user_id).where(ManualHost.chat_id == chat_id)
            )
            manual_ids = frozenset(manual.scalars())
        start = chat.tracking_start_ts if chat is not None else None
        return HistoryRows(
            tracking_start_utc=from_ts(start) if start is not None else None,
            baseline_count=chat.baseline_count if chat is not None else 0,
            membership=membership,
            host_changes=host_changes,
            bots=bot_ids,
            manual_hosts=manual_ids,
            first_post_utc=first_post,
        )

    async def chat_periods(
        self,
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
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [
            (c, t, from_ts(a) if a is not None else None, from_ts(b) if b is not None else None, n)
            for c, t, a, b, n in rows
        ]

    # ---- exactly-once sending -------------------------------------------------------

    async def claim(
        self,
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
        async with self.engine.begin() as conn:
            inserted = await conn.execute(
                self._insert(Claim)
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
        self, chat_id: int, kind: str, metric: str, period: str, now: datetime, *, sent: bool
    ) -> None:
        """Record success, or release the claim at once so the next check retries it."""
        key = (
            Claim.chat_id == chat_id,
            Claim.kind == kind,
            Claim.metric == metric,
            Claim.period == period,
        )
        values = {"sent_ts": to_ts(now)} if sent else {"claimed_ts": 0}
        async with self.engine.begin() as conn:
            await conn.execute(update(Claim).where(*key).values(**values))

    # ---- privacy ---------------------------------------------------------------------

    async def forget_user(self, user_id: int) -> int:
        """Remove one person's rows from every group (/forgetme); returns rows removed."""
        removed = 0
        async with self.engine.begin() as conn:
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
            await self._bump(conn)
        return removed

    async def purge_chat(self, chat_id: int) -> None:
        """Remove everything stored about a group (/purge)."""
        async with self.engine.begin() as conn:
            for model in (
                ActivityRow,
                MessageRow,
                MembershipEventRow,
                HostEventRow,
                ManualHost,
                MemberCount,
                ChatTarget,
                Claim,
                Chat,
            ):
                await conn.execute(delete(model).where(model.chat_id == chat_id))

    async def drop_old_messages(self, before_utc: datetime) -> int:
        """Per-message rows older than the retention period (joins and leaves are kept:
        head-counts are built from them)."""
        async with self.engine.begin() as conn:
            await conn.execute(delete(ActivityRow).where(ActivityRow.ts < to_ts(before_utc)))
            result = await conn.execute(
                delete(MessageRow).where(MessageRow.ts < to_ts(before_utc))
            )
            return result.rowcount or 0

    # ---- update offset -------------------------------------------------------------

    async def get_state(self, key: str) -> int | None:
        async with self.engine.connect() as conn:
            value: int | None = (
                await conn.execute(select(BotState.value).where(BotState.key == key))
            ).scalar()
            return value

    async def set_state(self, key: str, value: int) -> None:
        stmt = self._insert(BotState).values(key=key, value=value)
        stmt = stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value})
        async with self.engine.begin() as conn:
            await conn.execute(stmt)

    async def counts(self) -> dict[str, int]:
        """Row counts per table (for tests and `opsbot db status`)."""
        out: dict[str, int] = {}
        async with self.engine.connect() as conn:
            for table in Base.metadata.sorted_tables:
                n = (await conn.execute(select(func.count()).select_from(table))).scalar_one()
                out[table.name] = n
        return out


def is_duplicate(kind: MemberKind, ts: int, near: Sequence[tuple[str, int]]) -> bool:
    """Same kind within the dedup window with no opposite event strictly between (SPEC 2)."""
    for other_kind, other_ts in near:
        if other_kind != kind:
            continue
        lo, hi = sorted((ts, other_ts))
        if not any(k != kind and lo < t < hi for k, t in near):
            return True
    return False
