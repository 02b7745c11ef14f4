"""Back-fill a group's history from a Telegram Desktop export (`result.json`), streamed.

Imported events go into the same tables, through the same rules (bot.classify), as live
ones, so every report works on them. Two passes over the file: the first learns which
display name belongs to which user id (invite_members/remove_members name people only
by display name), the second writes, in one transaction.
"""

from __future__ import annotations

import sys
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import ijson

from bot.classify import Sender, answer_marks, is_question, reply_marks, sender_role
from bot.config import Config
from bot.events import HostChange, MemberKind, MembershipEvent, Post, ReplyTarget, Role
from storage.bulk import BulkWriter
from storage.repo import DEDUP_WINDOW_S, Repo, is_duplicate, to_ts

GROUP_TYPES = {
    "private_group": "group",
    "private_supergroup": "supergroup",
    "public_supergroup": "supergroup",
}
JOIN_ACTIONS = ("join_group_by_link", "join_group_by_request", "invite_members")
RECENT_MESSAGES = 100_000  # reply targets kept in memory; older ones are read back from the db


class ExportError(ValueError):
    """The file cannot be imported; the message says why, in one line."""


@dataclass
class ImportSummary:
    chat_id: int
    title: str
    first: datetime | None = None
    last: datetime | None = None
    joins: int = 0
    leaves: int = 0
    messages: int = 0
    replies: int = 0
    baseline: int = 0
    unmatched_names: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def text(self) -> str:
        period = (
            f"{self.first:%Y-%m-%d %H:%M} .. {self.last:%Y-%m-%d %H:%M} UTC"
            if self.first and self.last
            else "empty"
        )
        lines = [
            f"chat      {self.title} ({self.chat_id})",
            f"period    {period}",
            f"joins     {self.joins}",
            f"leaves    {self.leaves}",
            f"messages  {self.messages} ({self.replies} replies)",
            f"baseline  {self.baseline} members present before the first event",
            f"unmatched {self.unmatched_names} display names without a user id (not counted)",
        ]
        for reason, n in sorted(self.skipped.items()):
            lines.append(f"skipped   {n} × {reason}")
        return "\n".join(lines)


@dataclass(frozen=True)
class ExportChat:
    name: str
    type: str
    id: int


def _peer_id(value: Any) -> tuple[str, int] | None:
    """`"user123"` / `"channel123"` / `"chat123"` / older plain integers -> (kind, id)."""
    if value is None:
        return None
    if isinstance(value, int):
        return ("user", value)
    text = str(value)
    for kind in ("user", "channel", "chat"):
        if text.startswith(kind) and text[len(kind) :].isdigit():
            return (kind, int(text[len(kind) :]))
    return ("user", int(text)) if text.lstrip("-").isdigit() else None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(p if isinstance(p, str) else str(p.get("text", "")) for p in value)
    return ""


def bot_api_chat_id(chat: ExportChat) -> int:
    """Bot API ids: supergroups are -100<id>, basic groups -<id>."""
    if GROUP_TYPES[chat.type] == "supergroup":
        return int(f"-100{chat.id}")
    return -chat.id


class _Reader:
    """Streams one export file: its chats, and each chat's messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.position = 0
        if not path.exists():
            raise ExportError(f"{path}: no such file")

    def _open(self) -> IO[bytes]:
        return self.path.open("rb")

    def chats(self) -> list[ExportChat]:
        """The group chats in the file, read without loading messages."""
        found: list[ExportChat] = []
        current: dict[str, Any] = {}
        try:
            with self._open() as fh:
                for prefix, event, value in ijson.parse(fh):
                    if prefix in (
                        "name",
                        "type",
                        "id",
                        "chats.list.item.name",
                        "chats.list.item.type",
                        "chats.list.item.id",
                    ):
                        current[prefix.rsplit(".", 1)[-1]] = value
                    elif (prefix, event) in (
                        ("messages", "start_array"),
                        ("chats.list.item.messages", "start_array"),
                    ):
                        found.append(self._chat(current))
                        current = {}
                        if prefix == "messages":
                            break
        except ijson.JSONError as exc:
            raise ExportError(f"{self.path}: not valid JSON or cut short ({exc})") from None
        if not found:
            raise ExportError(
                f"{self.path}: not a Telegram Desktop export (no chat with messages in it)"
            )
        return found

    @staticmethod
    def _chat(raw: dict[str, Any]) -> ExportChat:
        if "type" not in raw or "id" not in raw:
            raise ExportError("not a Telegram Desktop export: a chat without type or id")
        return ExportChat(str(raw.get("name") or ""), str(raw["type"]), int(raw["id"]))

    def messages(self, chat: ExportChat, full_account: bool) -> Iterator[dict[str, Any]]:
        prefix = "chats.list.item" if full_account else ""
        try:
            with self._open() as fh:
                if not full_account:
                    for item in ijson.items(fh, "messages.item", use_float=True):
                        self.position = fh.tell()
                        yield item
                    return
                for item in ijson.items(fh, prefix + "", use_float=True):
                    if item.get("id") == chat.id and item.get("type") == chat.type:
                        yield from item.get("messages", [])
                        return
        except ijson.JSONError as exc:
            raise ExportError(f"{self.path}: not valid JSON or cut short ({exc})") from None


class _Clock:
    """Message times: date_unixtime when present, else `date` in the export's timezone."""

    def __init__(self, export_tz: str | None) -> None:
        self.tz: ZoneInfo | None = None
        if export_tz:
            try:
                self.tz = ZoneInfo(export_tz)
            except (ZoneInfoNotFoundError, ValueError):
                raise ExportError(f"--export-timezone: unknown timezone {export_tz!r}") from None

    def __call__(self, item: dict[str, Any]) -> datetime:
        if item.get("date_unixtime"):
            return datetime.fromtimestamp(int(item["date_unixtime"]), UTC)
        if self.tz is None:
            raise ExportError(
                "this export has no date_unixtime (made before 2021): pass --export-timezone "
                "ZONE, the timezone of the computer that exported it"
            )
        return datetime.fromisoformat(str(item["date"])).replace(tzinfo=self.tz).astimezone(UTC)


class _Progress:
    def __init__(self, path: Path, label: str) -> None:
        self.size = max(path.stat().st_size, 1)
        self.label = label
        self.last = 0.0
        self.tty = sys.stderr.isatty()

    def update(self, done_bytes: int) -> None:
        now = time.monotonic()
        if self.tty and now - self.last > 0.3:
            self.last = now
            pct = min(100, done_bytes * 100 // self.size)
            bar = "#" * (pct // 4)
            sys.stderr.write(f"\r{self.label} [{bar:<25}] {pct:3d}%")
            sys.stderr.flush()

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\r" + " " * 60 + "\r")


def _names(reader: _Reader, chat: ExportChat, full: bool) -> dict[str, int | None]:
    """Display name -> user id; None when one name belongs to several ids."""
    names: dict[str, int | None] = {}
    for item in reader.messages(chat, full):
        for name_key, id_key in (("from", "from_id"), ("actor", "actor_id")):
            name, peer = item.get(name_key), _peer_id(item.get(id_key))
            if name and peer and peer[0] == "user":
                if names.get(name, peer[1]) != peer[1]:
                    names[name] = None
                else:
                    names[name] = peer[1]
    return names


@dataclass
class _State:
    """What the import keeps while streaming one chat."""

    chat_id: int
    export_id: int
    hosts: set[int]
    bots: frozenset[int]
    markers: tuple[str, ...]
    window_s: int
    existing: dict[int, list[tuple[str, int]]]  # what the database had (live data)
    window: deque[tuple[int, int, str]] = field(default_factory=deque)  # imported, last 60 s
    messages: dict[int, tuple[int, Role, int | None]] = field(default_factory=dict)
    recent: deque[Post] = field(default_factory=deque)
    first_seen: dict[int, str] = field(default_factory=dict)  # user -> "join"/"pre"/...
    baseline: set[object] = field(default_factory=set)
    users: set[int] = field(default_factory=set)


async def import_export(
    repo: Repo,
    config: Config,
    path: Path,
    chat_id: int | None = None,
    export_tz: str | None = None,
    hosts: Sequence[int] = (),
    bots: Sequence[int] = (),
) -> list[ImportSummary]:
    """Import every group chat of the file (or the one whose Bot API id is `chat_id`)."""
    clock = _Clock(export_tz)
    reader = _Reader(path)
    chats = reader.chats()
    full = len(chats) > 1 or _is_full_account(path)
    groups = [c for c in chats if c.type in GROUP_TYPES]
    if not groups:
        kinds = ", ".join(sorted({c.type for c in chats}))
        raise ExportError(f"{path}: a {kinds} export, not a group: only groups can be imported")
    if chat_id is not None and len(groups) > 1:
        groups = [c for c in groups if bot_api_chat_id(c) == chat_id] or groups[:1]
    summaries = []
    async with repo.engine.begin() as conn:  # one transaction: all or nothing
        writer = BulkWriter(repo, conn)
        for chat in groups:
            target = chat_id if chat_id is not None else bot_api_chat_id(chat)
            summaries.append(
                await _import_chat(
                    reader,
                    writer,
                    config,
                    chat,
                    target,
                    full,
                    clock,
                    set(hosts),
                    frozenset(bots),
                    path,
                )
            )
    return summaries


def _is_full_account(path: Path) -> bool:
    with path.open("rb") as fh:
        for prefix, event, value in ijson.parse(fh):
            if prefix == "" and event == "map_key":
                return bool(value == "chats")
    return False


async def _import_chat(
    reader: _Reader,
    writer: BulkWriter,
    config: Config,
    chat: ExportChat,
    chat_id: int,
    full: bool,
    clock: _Clock,
    hosts: set[int],
    bots: frozenset[int],
    path: Path,
) -> ImportSummary:
    settings = config.for_chat(chat_id)
    names = _names(reader, chat, full)
    start, old_baseline = await writer.chat(chat_id, chat.name, GROUP_TYPES[chat.type])
    state = _State(
        chat_id,
        chat.id,
        hosts | set(settings.hosts),
        bots,
        settings.question_markers,
        settings.discussion_window_s,
        await writer.existing_membership(chat_id),
    )
    summary = ImportSummary(chat_id, chat.name)
    for bot_id in bots:
        await writer.user(bot_id, None, True)
    progress = _Progress(path, "importing")
    for count, item in enumerate(reader.messages(chat, full), start=1):
        ts = clock(item)
        if summary.first is None:  # hosts given on the command line: hosts from the start
            for host in sorted(state.hosts):
                await writer.host(HostChange(chat_id, host, ts, True, 0, "import"))
        summary.first = summary.first or ts
        summary.last = ts
        if item.get("type") == "service":
            await _service(item, ts, state, writer, names, summary)
        elif item.get("type") == "message":
            await _message(item, ts, state, writer, summary)
        else:
            summary.skipped[f"items of type {item.get('type')!r}"] += 1
        if count % 2000 == 0:
            progress.update(reader.position)
    progress.done()
    await writer.flush()
    await writer.bump(chat_id)
    summary.baseline = len(state.baseline)
    if summary.first is not None and (start is None or to_ts(summary.first) < start):
        await writer.set_tracking(chat_id, summary.first, summary.baseline)
    elif start is not None:
        summary.baseline = old_baseline
    return summary


def _matched(
    names: dict[str, int | None], members: Sequence[str], summary: ImportSummary
) -> list[int | str]:
    out: list[int | str] = []
    for name in members:
        uid = names.get(name)
        if uid is None:
            summary.unmatched_names += 1
            out.append(name)
        else:
            out.append(uid)
    return out


async def _service(
    item: dict[str, Any],
    ts: datetime,
    state: _State,
    writer: BulkWriter,
    names: dict[str, int | None],
    summary: ImportSummary,
) -> None:
    action = item.get("action")
    actor = _peer_id(item.get("actor_id"))
    actor_id = actor[1] if actor and actor[0] == "user" else None
    seq = int(item.get("id", 0))
    if action == "create_group":
        if actor_id is not None:
            state.hosts.add(actor_id)
            await writer.host(HostChange(state.chat_id, actor_id, ts, True, seq, "import"))
        for who in _matched(names, item.get("members") or [], summary):
            if who not in state.hosts and who not in state.bots:
                state.baseline.add(who)  # SPEC 9: create_group members form the baseline
                if isinstance(who, int):
                    state.first_seen.setdefault(who, "baseline")
    elif action in JOIN_ACTIONS:
        people = (
            [actor_id]
            if action != "invite_members" and actor_id is not None
            else _matched(names, item.get("members") or [], summary)
        )
        for who in people:
            if isinstance(who, int):
                await _membership(
                    state,
                    writer,
                    summary,
                    who,
                    MemberKind.JOIN,
                    ts,
                    seq,
                    item.get("actor") if who == actor_id else None,
                )
    elif action == "remove_members":
        for who in _matched(names, item.get("members") or [], summary):
            if isinstance(who, int):
                await _membership(state, writer, summary, who, MemberKind.LEAVE, ts, seq, None)
    elif action in ("migrate_to_supergroup", "migrate_from_group"):
        pass  # pre-migration ids are already negative in exports: nothing to move
    else:
        summary.skipped[f"service action {action}"] += 1


async def _membership(
    state: _State,
    writer: BulkWriter,
    summary: ImportSummary,
    user: int,
    kind: MemberKind,
    ts: datetime,
    seq: int,
    name: object,
) -> None:
    if user in state.hosts or user in state.bots:
        return
    stamp = to_ts(ts)
    # the file is in time order: imported events over 60 s old can match nothing any more
    while state.window and state.window[0][0] < stamp - DEDUP_WINDOW_S:
        state.window.popleft()
    near = [(k, t) for k, t in state.existing.get(user, ()) if abs(t - stamp) <= DEDUP_WINDOW_S]
    near += [(k, t) for t, u, k in state.window if u == user]
    if is_duplicate(kind, stamp, near):
        summary.skipped["joins/leaves already stored"] += 1
        return
    state.window.append((stamp, user, str(kind)))
    if user not in state.first_seen:
        # first seen leaving (or posting) without a join: a member from before (SPEC 2, 9)
        state.first_seen[user] = str(kind)
        if kind == MemberKind.LEAVE:
            state.baseline.add(user)
    await _user(state, writer, user, name if isinstance(name, str) else None)
    await writer.membership(MembershipEvent(state.chat_id, user, kind, ts, seq, "import"))
    if kind == MemberKind.JOIN:
        summary.joins += 1
    else:
        summary.leaves += 1


async def _user(state: _State, writer: BulkWriter, user: int, name: str | None) -> None:
    if user not in state.users:
        state.users.add(user)
        await writer.user(user, name, user in state.bots)


async def _message(
    item: dict[str, Any], ts: datetime, state: _State, writer: BulkWriter, summary: ImportSummary
) -> None:
    peer = _peer_id(item.get("from_id"))
    if peer is None:
        summary.skipped["messages without a sender (deleted accounts)"] += 1
        return
    kind, pid = peer
    if kind == "user":
        sender = Sender(pid, user_is_bot=pid in state.bots)
    else:
        # the group itself (anonymous admin); any other channel: the linked channel
        sender_chat = -pid if kind == "chat" else int(f"-100{pid}")
        own = pid == state.export_id
        sender = Sender(
            None,
            sender_chat_id=state.chat_id if own else sender_chat,
            sender_chat_type="supergroup" if own else "channel",
            is_automatic_forward=not own,
        )
    role = sender_role(sender, state.chat_id, None, frozenset(state.hosts))
    user_id = pid if kind == "user" else None
    if user_id is not None:
        state.first_seen.setdefault(user_id, "post")
        if state.first_seen[user_id] == "post" and role == Role.MEMBER:
            state.baseline.add(user_id)  # posting without a recorded join
        await _user(state, writer, user_id, item.get("from"))
    mid = int(item["id"])
    post = Post(
        state.chat_id,
        mid,
        ts,
        role,
        user_id,
        sender.sender_chat_id,
        is_question=role == Role.MEMBER and is_question(_text(item.get("text")), state.markers),
    )
    reply = await _reply_target(item, state, writer)
    summary.messages += 1
    if reply is not None:
        summary.replies += 1
        marks = reply_marks(post, reply)
    else:
        cutoff = ts - timedelta(seconds=state.window_s)
        while state.recent and state.recent[0].ts_utc < cutoff:
            state.recent.popleft()
        marks = answer_marks(post, state.recent, state.window_s)
    await writer.post(post, reply, marks)
    state.messages[mid] = (to_ts(ts), role, user_id)
    if len(state.messages) > RECENT_MESSAGES:  # bounded memory: forget the oldest
        del state.messages[next(iter(state.messages))]
    if role == Role.HOST or (role == Role.MEMBER and post.is_question):
        state.recent.append(post)


async def _reply_target(
    item: dict[str, Any], state: _State, writer: BulkWriter
) -> ReplyTarget | None:
    target_id = item.get("reply_to_message_id")
    if target_id is None:
        return None
    target_id = int(target_id)
    known = state.messages.get(target_id)
    if known is not None:
        return ReplyTarget(target_id, datetime.fromtimestamp(known[0], UTC), known[1], known[2])
    stored = await writer.stored_message(state.chat_id, target_id)
    # unknown (deleted, or before the export): still a reply, so it answers no question
    return stored or ReplyTarget(target_id, datetime.fromtimestamp(0, UTC), Role.OTHER, None)
