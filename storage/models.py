"""Tables, unique keys and indexes. Times are UTC unix seconds (`ts`), never local time.

No message text is stored anywhere (SPEC 11).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

FAILED_NAME_MAX = 128  # error class and handler names in failed_updates

# SQLite only auto-increments INTEGER PRIMARY KEY columns.
Id = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Chat(Base):
    """A group the bot has seen; settings changed in chat override the config file."""

    __tablename__ = "chats"
    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    title: Mapped[str | None] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(16), default="supergroup")
    linked_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    # SPEC 9: the baseline is anchored at the bot's addition (or the first tracked event)
    tracking_start_ts: Mapped[int | None] = mapped_column(BigInteger)
    baseline_count: Mapped[int] = mapped_column(Integer, default=0)
    bot_status: Mapped[str | None] = mapped_column(String(16))
    bot_is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    migrated_to_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    # bumped by every write to the group's people (joins, leaves, hosts, baseline): readers
    # may keep what they derived from them for as long as it is unchanged
    data_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # the earliest event time written since the daily rollups were last brought up to date
    # (min-merged by every write, in its transaction); NULL: every rollup row is valid
    rollups_dirty_ts: Mapped[int | None] = mapped_column(BigInteger)
    # settings changed with /settings; NULL = from the config file
    timezone: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str | None] = mapped_column(String(8))
    digest_time: Mapped[str | None] = mapped_column(String(5))
    digest_to: Mapped[str | None] = mapped_column(String(32))


class User(Base):
    __tablename__ = "users"
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    is_bot: Mapped[bool] = mapped_column(Boolean, default=False)
    # the display name, "first last" as Telegram shows it (and writes it in exports)
    first_name: Mapped[str | None] = mapped_column(String(255))
    username: Mapped[str | None] = mapped_column(String(64))
    # the few bots among everyone, without reading every user
    __table_args__ = (
        Index(
            "ix_users_bots",
            "user_id",
            sqlite_where=text("is_bot = 1"),  # as SQLAlchemy writes it
            postgresql_where=text("is_bot"),
        ),
    )


class MembershipEventRow(Base):
    """One join or leave, deduplicated across sources (SPEC 2)."""

    __tablename__ = "membership_events"
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(5))  # join | leave
    ts: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    source: Mapped[str] = mapped_column(String(16))  # chat_member | service | import
    invite_link: Mapped[str | None] = mapped_column(String(255))
    invite_link_name: Mapped[str | None] = mapped_column(String(64))
    via_join_request: Mapped[bool] = mapped_column(Boolean, default=False)
    # joins only (SPEC 12): link:<name or url> | link | request | added | direct
    join_source: Mapped[str | None] = mapped_column(String(300))
    inviter_id: Mapped[int | None] = mapped_column(BigInteger)
    __table_args__ = (
        UniqueConstraint("chat_id", "user_id", "kind", "ts"),
        # who had events since a time, from the index alone (reports' recent people)
        Index(None, "chat_id", "ts", "user_id"),
        Index(None, "chat_id", "user_id", "ts"),
    )


class HostEventRow(Base):
    """A change of a user's admin/host status in a group, stored only when it changes."""

    __tablename__ = "host_events"
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(BigInteger)
    ts: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    is_host: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(16))
    __table_args__ = (
        UniqueConstraint("chat_id", "user_id", "ts", "is_host"),
        Index(None, "chat_id", "user_id", "ts"),
    )


class ManualHost(Base):
    """Hosts added with /hosts add (config hosts live in the config file)."""

    __tablename__ = "manual_hosts"
    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    added_ts: Mapped[int] = mapped_column(BigInteger)


class MessageRow(Base):
    """A non-service message without its text: sender, time, reply target, derived flags."""

    __tablename__ = "messages"
    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    message_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ts: Mapped[int] = mapped_column(BigInteger)
    role: Mapped[str] = mapped_column(String(8))  # host | member | bot | other
    sender_id: Mapped[int | None] = mapped_column(BigInteger)
    sender_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    reply_to_message_id: Mapped[int | None] = mapped_column(BigInteger)
    reply_to_sender_id: Mapped[int | None] = mapped_column(BigInteger)
    is_question: Mapped[bool] = mapped_column(Boolean, default=False)
    is_response: Mapped[bool] = mapped_column(Boolean, default=False)
    is_discussion: Mapped[bool] = mapped_column(Boolean, default=False)
    # the forum topic (message_thread_id); NULL: the General topic, or a group without topics
    thread_id: Mapped[int | None] = mapped_column(BigInteger)
    __table_args__ = (
        Index(None, "chat_id", "ts"),
        # first posts of people with membership events (pre-tracking members, SPEC 2)
        Index(None, "chat_id", "sender_id", "ts", "role"),
    )


class ActivityRow(Base):
    """`user_id` counts as active at `level` on the local day of `ts` through `message_id`."""

    __tablename__ = "activity"
    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    level: Mapped[str] = mapped_column(String(12), primary_key=True)
    message_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(BigInteger)
    ts: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (Index(None, "chat_id", "level", "ts", "user_id"),)


class MemberCount(Base):
    """getChatMemberCount readings (baseline and daily drift checks)."""

    __tablename__ = "member_counts"
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    ts: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(Integer)
    __table_args__ = (Index(None, "chat_id", "ts"),)


class ChatTarget(Base):
    """A target set in chat with /settarget; value NULL = switched off (wins over config)."""

    __tablename__ = "chat_targets"
    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    metric: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float)
    range: Mapped[str | None] = mapped_column(String(16))
    set_by: Mapped[int | None] = mapped_column(BigInteger)
    ts: Mapped[int] = mapped_column(BigInteger)


class Claim(Base):
    """A digest or alert claimed before sending: unique per (chat, kind, metric, period).

    `sent_ts` NULL means claimed but not (yet) delivered; such a claim can be taken over
    after its lease ran out, so a crash or a failed send is retried, and a sent one never is.
    """

    __tablename__ = "claims"
    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # digest | alert
    metric: Mapped[str] = mapped_column(String(32), primary_key=True)  # "" for digests
    period: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    claimed_ts: Mapped[int] = mapped_column(BigInteger)
    sent_ts: Mapped[int | None] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, default=1)


class BotState(Base):
    """Small named values the bot keeps, e.g. the getUpdates offset of committed updates."""

    __tablename__ = "bot_state"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class FailedUpdate(Base):
    """The dead-letter table: updates that failed other than by the database being
    unavailable (or that could not be parsed), confirmed to Telegram and skipped. Ids and
    error classes only, never the update itself."""

    __tablename__ = "failed_updates"
    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ts: Mapped[int] = mapped_column(BigInteger)
    error: Mapped[str] = mapped_column(String(FAILED_NAME_MAX))
    handler: Mapped[str] = mapped_column(String(FAILED_NAME_MAX))


class DashboardToken(Base):
    """Dashboard login links and sessions, by the SHA-256 of their secret (never the secret
    itself), so `opsbot dashboard` in another process accepts what the bot handed out."""

    __tablename__ = "dashboard_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # login | session
    user_id: Mapped[int] = mapped_column(BigInteger)
    chat_id: Mapped[int | None] = mapped_column(BigInteger)  # the group a login link opens
    expires_ts: Mapped[int] = mapped_column(BigInteger, index=True)
    used: Mapped[bool] = mapped_column(Boolean, default=False)


class DailyRollup(Base):
    """One group's finished local day, as `bot.metrics.day_numbers` computed it with the
    timezone, windows and config-file hosts it names (a cache: storage/rollups.py; a row
    computed with other settings than the group's current ones is not used). `cells` holds
    every window's retained/matured/pending as JSON; the default windows are also columns, for the
    daily_metrics view."""

    __tablename__ = "daily_rollups"
    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # local day, ISO
    timezone: Mapped[str] = mapped_column(String(64))
    windows: Mapped[str] = mapped_column(String(255))  # comma-separated, sorted
    hosts: Mapped[str] = mapped_column(Text)  # the config file's hosts, comma-separated
    joins: Mapped[int] = mapped_column(Integer)
    leaves: Mapped[int] = mapped_column(Integer)
    headcount_end: Mapped[int | None] = mapped_column(Integer)
    audience: Mapped[int | None] = mapped_column(Integer)
    response_users: Mapped[int] = mapped_column(Integer)
    interaction_users: Mapped[int] = mapped_column(Integer)
    retained_1h: Mapped[int] = mapped_column(Integer)
    matured_1h: Mapped[int] = mapped_column(Integer)
    retained_day0: Mapped[int] = mapped_column(Integer)
    matured_day0: Mapped[int] = mapped_column(Integer)
    retained_day1: Mapped[int] = mapped_column(Integer)
    matured_day1: Mapped[int] = mapped_column(Integer)
    cells: Mapped[str] = mapped_column(Text)  # {"window": [retained, matured, pending]}
    top_source: Mapped[str | None] = mapped_column(Text)  # the digest's line, as JSON
    final: Mapped[bool] = mapped_column(Boolean, server_default=true())  # no cell pending
    horizon_ts: Mapped[int] = mapped_column(BigInteger, server_default="0")  # see rollups.py
    computed_ts: Mapped[int] = mapped_column(BigInteger)
