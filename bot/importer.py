"""Back-fill a group's history from a Telegram Desktop export (`result.json`), streamed.

Imported events go into the same tables as live ones, through the same rules
(bot.classify, storage.repo.is_duplicate), so every report works on them and an import
overlapping live data stores each join, leave and message once (SPEC 2, 8, 9).

The file is read twice and never loaded whole: a first pass checks it, finds its chats,
learns which display name belongs to which user id (`invite_members`, `remove_members` and
`create_group` name people only by display name) and which channel's posts come in as
automatic forwards (the linked channel); the second pass writes everything in
one transaction, so a broken file leaves the database exactly as it was. Memory holds
per-person state, the last `discussion_window` of posts, and the most recent messages as
reply targets (older targets are read back from the database).
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import ijson

from bot.classify import Sender, answer_marks, is_question, reply_marks, sender_role
from bot.config import Config, GroupSettings
from bot.events import HostChange, MemberKind, MembershipEvent, Post, ReplyTarget, Role
from storage.bulk import BulkWriter, StoredPost
from storage.repo import DEDUP_WINDOW_S, Repo, is_duplicate

# Telegram Desktop chat types that are groups, and the Bot API chat type of each
GROUP_TYPES = {
    "private_group": "group",
    "private_supergroup": "supergroup",
    "public_supergroup": "supergroup",
}
NOT_GROUPS = {
    "personal_chat": "a private chat",
    "bot_chat": "a private chat with a bot",
    "saved_messages": "saved messages",
    "private_channel": "a channel",
    "public_channel": "a channel",
}
JOIN_BY_ACTOR = ("join_group_by_link", "join_group_by_request")
MIGRATION = ("migrate_to_supergroup", "migrate_from_group")
RECENT_MESSAGES = 200_000  # reply targets kept in memory; older ones are read from the db
PREFETCH = 5_000  # message ids per look-up of messages already stored (live overlap)
PROGRESS_EVERY_S = 0.25
# People known by name only get an id no Telegram user has: Telegram user ids fit in 52 bits
NAME_ONLY_BASE = 1 << 62
DELETED_ACCOUNT = "Deleted Account"  # what Telegram shows for a `null` name
LINKED_BY = {
    "flag": "from --linked-channel",
    "database": "already known for the group",
    "forwards": "its automatic forwards in the export",
}
NO_UNIXTIME = (
    "this export has no date_unixtime (made before 2021): pass --export-timezone ZONE, "
    "the timezone of the computer that exported it"
)


class ExportError(ValueError):
    """The file cannot be imported; the message says why, in one line."""


@dataclass
class ImportSummary:
    chat_id: int
    title: str
    type: str = ""
    first: datetime | None = None
    last: datetime | None = None
    joins: int = 0
    leaves: int = 0
    messages: int = 0
    replies: int = 0
    baseline: int = 0  # members present before the export's first event, as imported
    baseline_applied: bool = False  # False: the group was tracked from an earlier time
    tracking_start: datetime | None = None  # in force after the import
    name_only: int = 0  # people the export names only by display name
    name_only_known: int = 0  # … of whom the database already knew the user id
    linked: int | None = None  # the linked channel taken for this import
    linked_by: str = ""  # "flag" | "database" | "forwards"
    skipped: Counter[str] = field(default_factory=Counter)

    def text(self) -> str:
        def when(dt: datetime | None) -> str:
            return f"{dt:%Y-%m-%d %H:%M}" if dt else "-"

        period = f"{when(self.first)} .. {when(self.last)} UTC" if self.first else "no items"
        if self.baseline_applied or self.tracking_start is None:
            tracking = f"tracking from {when(self.tracking_start)} UTC"
        else:
            tracking = f"kept: the group is tracked from {when(self.tracking_start)} UTC"
        lines = [
            f"chat      {self.title} ({self.chat_id}, {self.type})",
            f"period    {period}",
            f"joins     {self.joins}",
            f"leaves    {self.leaves}",
            f"messages  {self.messages} ({self.replies} replies)",
            f"baseline  {self.baseline} {'member' if self.baseline == 1 else 'members'} "
            f"before the first event ({tracking})",
            f"by name   {self.name_only} {'person' if self.name_only == 1 else 'people'} "
            "known by name only"
            + (f" ({self.name_only_known} matched a known user)" if self.name_only_known else ""),
            f"linked    {self.linked} ({LINKED_BY[self.linked_by]})"
            if self.linked is not None
            else "linked    none (no linked channel known or seen)",
        ]
        lines += [f"skipped   {n} × {why}" for why, n in sorted(self.skipped.items())]
        return "\n".join(lines)


# ---- pure: reading one export item ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExportChat:
    name: str
    type: str
    id: int
    index: int = 0  # position in the file (full-account exports list several chats)

    @property
    def is_group(self) -> bool:
        return self.type in GROUP_TYPES


def bot_api_chat_id(chat_type: str, export_id: int) -> int:
    """Bot API ids: supergroups are -100<id>, basic groups -<id>."""
    if GROUP_TYPES.get(chat_type) == "supergroup":
        return int(f"-100{export_id}")
    return -export_id


def linked_channel_id(text: str) -> int:
    """`--linked-channel`: a Bot API channel id (-100…), or the export's own form of it
    (`channel123` or the bare 123) -> the Bot API id."""
    value = text.strip().removeprefix("channel")
    if value.startswith("-100") and value[4:].isdigit():
        return int(value)
    if value.isdigit() and int(value) > 0:
        return int(f"-100{value}")
    raise ValueError(f"expected a channel id like -1001234567890 or 1234567890, got {text!r}")


def name_only_id(chat_id: int, name: str) -> int:
    """The stable id of a person the export of `chat_id` knows only as `name`: the same in
    every import of the group, and above every real Telegram user id (SPEC 9)."""
    digest = hashlib.sha256(f"{chat_id}\n{name}".encode()).digest()
    return NAME_ONLY_BASE + int.from_bytes(digest[:8], "big") % NAME_ONLY_BASE


def peer_id(value: Any) -> tuple[str, int] | None:
    """`"user123"` / `"channel123"` / `"chat123"` / older plain integers -> (kind, id)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return ("user", value)
    if isinstance(value, float) and value.is_integer():
        return ("user", int(value))
    text = str(value).strip()
    for kind in ("user", "channel", "chat"):
        rest = text.removeprefix(kind)
        if rest != text and rest.isdigit():
            return (kind, int(rest))
    return ("user", int(text)) if text.isdigit() else None


def user_of(value: Any) -> int | None:
    peer = peer_id(value)
    return peer[1] if peer is not None and peer[0] == "user" else None


def message_text(value: Any) -> str:
    """`text` is a string or a list of strings and {type, text} parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(
            p if isinstance(p, str) else str(p.get("text", "")) if isinstance(p, dict) else ""
            for p in value
        )
    return ""


class Clock:
    """Item times: `date_unixtime` when present, else `date` in the export's timezone."""

    def __init__(self, export_tz: str | None) -> None:
        self.tz: ZoneInfo | None = None
        if export_tz:
            try:
                self.tz = ZoneInfo(export_tz)
            except (ZoneInfoNotFoundError, ValueError):
                raise ExportError(
                    f"--export-timezone: unknown timezone {export_tz!r}; "
                    'use an IANA name like "Europe/Berlin"'
                ) from None

    def __call__(self, item: Mapping[str, Any]) -> datetime:
        unix = item.get("date_unixtime")
        if unix not in (None, ""):
            try:
                return datetime.fromtimestamp(int(unix), UTC)
            except (TypeError, ValueError, OverflowError, OSError):
                raise ExportError(
                    f"item {item.get('id')!r}: unreadable date_unixtime {unix!r}"
                ) from None
        if self.tz is None:
            raise ExportError(NO_UNIXTIME)
        try:
            local = datetime.fromisoformat(str(item["date"]))
        except (KeyError, ValueError):
            raise ExportError(f"item {item.get('id')!r}: no readable date") from None
        return local.replace(tzinfo=self.tz).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class ServiceItem:
    message_id: int
    ts_utc: datetime
    action: str
    actor_id: int | None  # a user id
    actor_name: str | None
    members: tuple[str | None, ...]  # display names (None: a deleted account)


@dataclass(frozen=True, slots=True)
class MessageItem:
    message_id: int
    ts_utc: datetime
    peer: tuple[str, int] | None  # from_id: ("user" | "channel" | "chat", id)
    sender_name: str | None
    text: str  # looked at once, for is_question, and never stored (SPEC 11)
    reply_to: int | None


@dataclass(frozen=True, slots=True)
class SkippedItem:
    ts_utc: datetime | None
    reason: str


ExportItem = ServiceItem | MessageItem | SkippedItem


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def parse_item(raw: Any, clock: Clock) -> ExportItem:
    """One element of `messages` -> a service action, a message, or why it is skipped."""
    if not isinstance(raw, dict):
        return SkippedItem(None, "items that are not JSON objects")
    mid = _int(raw.get("id"))
    if mid is None:
        return SkippedItem(None, "items without a message id")
    ts = clock(raw)
    kind = raw.get("type")
    if kind == "service":
        members = raw.get("members")
        return ServiceItem(
            mid,
            ts,
            str(raw.get("action") or ""),
            user_of(raw.get("actor_id")),
            _name(raw.get("actor")),
            tuple(_name(m) for m in members) if isinstance(members, list) else (),
        )
    if kind == "message":
        reply = raw.get("reply_to_message_id")
        return MessageItem(
            mid,
            ts,
            peer_id(raw.get("from_id")),
            _name(raw.get("from")),
            message_text(raw.get("text")),
            _int(reply) if reply is not None else None,
        )
    return SkippedItem(ts, f"items of type {kind!r}")


def _name(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def message_sender(
    peer: tuple[str, int], export_id: int, chat_id: int, bots: frozenset[int] | set[int]
) -> Sender:
    """The facts classify.sender_role needs, from an export's `from_id` (SPEC 2, 9)."""
    kind, pid = peer
    if kind == "user":
        return Sender(pid, user_is_bot=pid in bots)
    if pid == export_id:  # sent as the group itself: an anonymous admin
        return Sender(None, sender_chat_id=chat_id, sender_chat_type="supergroup")
    if kind == "channel":
        return Sender(None, sender_chat_id=int(f"-100{pid}"), sender_chat_type="channel")
    return Sender(None, sender_chat_id=-pid, sender_chat_type="group")


Person = int | str  # a user id, or a display name the export shows with no (single) id


@dataclass(frozen=True, slots=True)
class Effects:
    """What a service action means for membership (SPEC 2, 9)."""

    joins: tuple[Person, ...] = ()
    leaves: tuple[Person, ...] = ()
    founders: tuple[Person, ...] = ()  # create_group members: the baseline, not joins
    hosts: tuple[int, ...] = ()
    names: tuple[tuple[int, str], ...] = ()  # display names of the people found
    ignored: bool = False  # an action with nothing to record (pin_message, …)


def resolve_name(
    name: str | None, names: Mapping[str, int | None], actor: tuple[str | None, int | None]
) -> Person:
    """A display name -> the user id seen with it in the export, else the name itself."""
    if name is not None and actor[1] is not None and name == actor[0]:
        return actor[1]
    uid = names.get(name) if name is not None else None
    return uid if uid is not None else (name if name is not None else DELETED_ACCOUNT)


def service_effects(item: ServiceItem, names: Mapping[str, int | None]) -> Effects:
    """Joins, leaves, baseline members and hosts a service action stands for."""
    actor = (item.actor_name, item.actor_id)
    found = ((item.actor_id, item.actor_name),) if item.actor_id and item.actor_name else ()

    def people(hint: tuple[str | None, int | None]) -> tuple[tuple[Person, ...], Any]:
        pairs = [(resolve_name(m, names, hint), m) for m in item.members]
        ids = tuple((p, m) for p, m in pairs if isinstance(p, int) and m is not None)
        return tuple(p for p, _ in pairs), ids

    if item.action in JOIN_BY_ACTOR:  # the actor is who joined
        who: Person = (
            item.actor_id if item.actor_id is not None else item.actor_name or DELETED_ACCOUNT
        )
        return Effects(joins=(who,), names=found)
    if item.action == "invite_members":  # the actor is the inviter, not a joiner
        joins, ids = people((None, None))
        return Effects(joins=joins, names=ids)
    if item.action == "remove_members":  # the actor removing themselves: they left
        leaves, ids = people(actor)
        return Effects(leaves=leaves, names=ids + found)
    if item.action == "create_group":
        members, ids = people(actor)
        founders = tuple(p for p in members if p != item.actor_id)
        hosts = (item.actor_id,) if item.actor_id is not None else ()
        return Effects(founders=founders, hosts=hosts, names=ids + found)
    if item.action in MIGRATION:  # pre-migration ids are already negative in exports
        return Effects()
    return Effects(ignored=True)


IMPORT_SOURCES = {"join_group_by_link": "link", "join_group_by_request": "request"}


def import_join_source(item: ServiceItem, who: Person) -> tuple[str | None, int | None]:
    """An export's join: `link` (it does not say which link), `request`, or `added` by
    another person, who is the inviter (SPEC 12)."""
    if item.action in IMPORT_SOURCES:
        return IMPORT_SOURCES[item.action], None
    if item.action == "invite_members" and who not in (item.actor_id, item.actor_name):
        return "added", item.actor_id
    return "direct", None


def learn_names(names: dict[str, int | None], raw: Mapping[str, Any]) -> None:
    """Display name -> user id from `from`/`from_id` and `actor`/`actor_id`; None when
    one name belongs to several people (then it matches nobody)."""
    for name_key, id_key in (("from", "from_id"), ("actor", "actor_id")):
        name, uid = _name(raw.get(name_key)), user_of(raw.get(id_key))
        if name is not None and uid is not None:
            known = names.get(name, uid)
            names[name] = uid if known == uid else None


def automatic_forward(raw: Mapping[str, Any], export_id: int) -> int | None:
    """The channel (export id) of an automatic forward: a post whose `from_id` is a channel
    other than the group and whose `forwarded_from` is that same channel (Telegram Desktop
    writes `forwarded_from` as the channel's name)."""
    if raw.get("type") != "message":
        return None
    peer = peer_id(raw.get("from_id"))
    if peer is None or peer[0] != "channel" or peer[1] == export_id:
        return None
    name = _name(raw.get("from"))
    return peer[1] if name is not None and raw.get("forwarded_from") == name else None


# ---- reading the file -----------------------------------------------------------------


class _Progress:
    """`label [#####     ]  42%` on stderr, only when stderr is a terminal."""

    def __init__(self, size: int, label: str, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.size = max(size, 1)
        self.label = label
        self.enabled = self.stream.isatty()
        self.last = 0.0
        self.shown = False

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        pct = min(100, done * 100 // self.size)
        self.stream.write(f"\r{self.label} [{'#' * (pct // 4):<25}] {pct:3d}%")
        self.stream.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * (len(self.label) + 34) + "\r")
            self.stream.flush()


class ExportFile:
    """Streams one `result.json`: a single chat, or a full-account export's chats."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            if not path.is_file():
                raise ExportError(
                    f"{path}: " + ("not a file" if path.exists() else "no such file")
                )
            self.size = path.stat().st_size
        except OSError as exc:
            raise ExportError(f"{path}: cannot read it ({exc.strerror or exc})") from None
        self.full_account, self.single = self._layout()

    def _bad_json(self, exc: Exception) -> ExportError:
        detail = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        return ExportError(f"{self.path}: not valid JSON, or cut short ({detail})")

    def _layout(self) -> tuple[bool, ExportChat | None]:
        """(full-account export?, the chat of a single-chat export)."""
        header: dict[str, Any] = {}
        try:
            with self.path.open("rb") as fh:
                events = ijson.parse(fh, use_float=True)
                first = next(events, None)
                if first is None or first[1] != "start_map":
                    raise ExportError(
                        f"{self.path}: JSON, but not a Telegram Desktop export "
                        "(expected an object with a list of messages)"
                    )
                for prefix, event, value in events:
                    if prefix == "" and event == "map_key" and value == "chats":
                        return True, None
                    if prefix in ("name", "type", "id") and event not in ("start_map", "map_key"):
                        header[prefix] = value
                    elif prefix == "messages" and event == "start_array":
                        return False, self._chat(header, 0)
        except ExportError:
            raise
        except (ijson.JSONError, UnicodeDecodeError, ValueError) as exc:
            raise self._bad_json(exc) from None
        except OSError as exc:
            raise ExportError(f"{self.path}: cannot read it ({exc.strerror or exc})") from None
        raise ExportError(
            f'{self.path}: JSON, but not a Telegram Desktop export (no "messages" or "chats")'
        )

    def _chat(self, raw: Mapping[str, Any], index: int) -> ExportChat:
        export_id = _int(raw.get("id"))
        if not isinstance(raw.get("type"), str) or export_id is None:
            raise ExportError(
                f"{self.path}: JSON, but not a Telegram Desktop export (a chat without type or id)"
            )
        return ExportChat(str(raw.get("name") or ""), str(raw["type"]), export_id, index)

    def items(self, label: str) -> Iterator[tuple[ExportChat, Any]]:
        """(chat, None) when a chat begins, then (chat, item) for each of its messages."""
        progress = _Progress(self.size, label)
        try:
            with self.path.open("rb") as fh:
                if self.single is not None:
                    yield self.single, None
                    for n, item in enumerate(ijson.items(fh, "messages.item", use_float=True)):
                        if n % 512 == 0:
                            progress.update(fh.tell())
                        yield self.single, item
                else:
                    yield from self._account_items(fh, progress)
        except ExportError:
            raise
        except (ijson.JSONError, UnicodeDecodeError) as exc:
            raise self._bad_json(exc) from None
        except OSError as exc:
            raise ExportError(f"{self.path}: cannot read it ({exc.strerror or exc})") from None
        finally:
            progress.done()

    def _account_items(
        self, fh: IO[bytes], progress: _Progress
    ) -> Iterator[tuple[ExportChat, Any]]:
        """Full-account export: every chat of `chats.list`, one message at a time."""
        headers: deque[ExportChat] = deque()  # chats whose header is read, not announced
        header: dict[str, Any] | None = None  # the chat being read, until its header is done
        fields = {f"chats.list.item.{k}": k for k in ("name", "type", "id")}
        scalar = ("null", "boolean", "integer", "double", "number", "string")
        total = 0  # chats whose header is read

        def events() -> Iterator[tuple[str, str, Any]]:
            nonlocal header, total
            for prefix, event, value in ijson.parse(fh, use_float=True):
                if prefix == "chats.list.item" and event == "start_map":
                    header = {}
                elif prefix in fields and event in scalar and header is not None:
                    header[fields[prefix]] = value
                elif header is not None and (
                    (prefix == "chats.list.item.messages" and event == "start_array")
                    or (prefix == "chats.list.item" and event == "end_map")
                ):  # the exporter writes name, type and id before the messages
                    headers.append(self._chat(header, total))
                    header, total = None, total + 1
                yield prefix, event, value

        chat: ExportChat | None = None
        for n, item in enumerate(ijson.items(events(), "chats.list.item.messages.item")):
            while headers:
                chat = headers.popleft()
                yield chat, None
            if n % 512 == 0:
                progress.update(fh.tell())
            if chat is not None:
                yield chat, item
        while headers:
            yield headers.popleft(), None


# ---- pass 1: check the file, find its chats and the names of their people -----------


@dataclass
class _Scan:
    chat: ExportChat
    names: dict[str, int | None] = field(default_factory=dict)
    listed: set[str] = field(default_factory=set)  # names in `members` lists
    forwards: Counter[int] = field(default_factory=Counter)  # automatic forwards per channel
    first: datetime | None = None
    last: datetime | None = None


def _scan(file: ExportFile, clock: Clock) -> list[_Scan]:
    if file.single is not None and not file.single.is_group:
        _select(file, [_Scan(file.single)], None)  # raises: not a group
    scans: list[_Scan] = []
    for chat, raw in file.items("checking"):
        if raw is None:
            scans.append(_Scan(chat))
            continue
        scan = scans[-1]
        if not chat.is_group or not isinstance(raw, dict):
            continue
        learn_names(scan.names, raw)
        members = raw.get("members")
        if isinstance(members, list):
            scan.listed.update(_name(m) or DELETED_ACCOUNT for m in members)
        channel = automatic_forward(raw, chat.id)
        if channel is not None:
            scan.forwards[channel] += 1
        if _int(raw.get("id")) is None:
            continue
        ts = clock(raw)
        scan.first = ts if scan.first is None or ts < scan.first else scan.first
        scan.last = ts if scan.last is None or ts > scan.last else scan.last
    return scans


def _select(file: ExportFile, scans: list[_Scan], chat_id: int | None) -> list[tuple[_Scan, int]]:
    """The group chats to import and the Bot API id each is filed under."""
    groups = [s for s in scans if s.chat.is_group]
    if not groups:
        if file.single is not None:
            c = file.single
            what = NOT_GROUPS.get(c.type, f"a {c.type!r} chat")
            raise ExportError(
                f"{file.path}: {c.name or c.id!r} is {what}, not a group: only groups "
                "(private_group, private_supergroup, public_supergroup) can be imported"
            )
        raise ExportError(f"{file.path}: this account export has no group chats to import")
    if file.single is not None:
        s = groups[0]
        return [(s, chat_id if chat_id is not None else bot_api_chat_id(s.chat.type, s.chat.id))]
    if chat_id is None:
        return [(s, bot_api_chat_id(s.chat.type, s.chat.id)) for s in groups]
    chosen = [s for s in groups if chat_id in (s.chat.id, bot_api_chat_id(s.chat.type, s.chat.id))]
    if not chosen:
        raise ExportError(f"{file.path}: no group with id {chat_id} in this account export")
    return [(chosen[0], bot_api_chat_id(chosen[0].chat.type, chosen[0].chat.id))]


# ---- pass 2: one chat's events into the database -------------------------------------


class _ChatImport:
    """The state kept while streaming one group: per person, the discussion window, and
    recent messages as reply targets."""

    def __init__(
        self,
        writer: BulkWriter,
        scan: _Scan,
        chat_id: int,
        settings: GroupSettings,
        clock: Clock,
        hosts: Sequence[int],
        bots: Sequence[int],
        linked_channel: int | None = None,
    ) -> None:
        self.w = writer
        self.scan = scan
        self.chat = scan.chat
        self.chat_id = chat_id
        self.settings = settings
        self.clock = clock
        self.cli_hosts = sorted(set(hosts))
        self.cli_bots = sorted(set(bots))
        self.bots: set[int] = set(bots)
        self.summary = ImportSummary(chat_id, self.chat.name, self.chat.type)
        self.summary.first, self.summary.last = scan.first, scan.last
        self.always_hosts: set[int] = set(settings.hosts)
        self.timeline: dict[int, list[tuple[int, int, bool]]] = {}
        self.existing: dict[int, list[tuple[str, int]]] = {}
        self.imported: deque[tuple[int, int, str]] = deque()  # (ts, user, kind), last 60 s
        self.seen: set[int] = set()  # people with a join, leave, post or founder entry
        self.baseline: set[int] = set()
        self.users: set[int] = set()
        self.named: dict[str, int] = {}  # display name -> the person it stands for
        self.known_names: dict[str, list[int]] = {}  # of users the database knows in the group
        self.messages: dict[int, tuple[int, Role, int | None]] = {}
        self.recent: deque[Post] = deque()  # host posts and member questions in the window
        self.linked: int | None = linked_channel
        self.tracking_ts: int | None = None
        self.stored_range: tuple[int, int] | None = None
        self.stored: dict[int, StoredPost] = {}
        self.stored_window = (0, 0)
        self.evicted_upto: int | None = None  # highest message id dropped from `messages`

    async def start(self) -> None:
        w, chat_id = self.w, self.chat_id
        await w.ensure_chat(chat_id, self.chat.name or None, GROUP_TYPES[self.chat.type])
        state = await w.chat_state(chat_id)
        assert state is not None
        self.tracking_ts = state.tracking_start_ts
        await self.choose_linked(state.linked_chat_id)
        unresolved = {n for n in self.scan.listed if n not in self.scan.names}
        self.known_names = await w.group_users_named(chat_id, unresolved)
        self.existing = await w.existing_membership(chat_id)
        self.timeline = await w.host_timeline(chat_id)
        self.always_hosts |= await w.manual_hosts(chat_id)
        self.bots |= await w.known_bots()
        self.stored_range = await w.message_id_range(chat_id)
        await w.bots(self.cli_bots)
        first = self.scan.first
        if first is not None:  # --host: hosts for the whole export, from its first event
            for host in self.cli_hosts:
                if not self.is_host(host, first):
                    await self.add_host(HostChange(chat_id, host, first, True, 0, "import"))

    async def choose_linked(self, stored: int | None) -> None:
        """The linked channel (SPEC 9): the flag's, else the stored one, else the channel
        whose automatic forwards the export shows. Kept for the group if none was known."""
        s = self.summary
        if self.linked is not None:
            s.linked_by = "flag"
        elif stored is not None:
            self.linked, s.linked_by = stored, "database"
        elif self.scan.forwards:
            [(channel, _)] = self.scan.forwards.most_common(1)
            self.linked, s.linked_by = int(f"-100{channel}"), "forwards"
        s.linked = self.linked
        if stored is None and self.linked is not None:
            await self.w.set_linked(self.chat_id, self.linked)

    # ---- hosts ----

    def is_host(self, user: int, ts: datetime) -> bool:
        """Host at `ts` (changes at exactly `ts` included), as the metrics see it."""
        if user in self.always_hosts:
            return True
        stamp, state = int(ts.timestamp()), False
        for t, _, is_host in self.timeline.get(user, ()):
            if t > stamp:
                break
            state = is_host
        return state

    async def add_host(self, change: HostChange) -> None:
        line = self.timeline.setdefault(change.user_id, [])
        line.append((int(change.ts_utc.timestamp()), change.seq, change.is_host))
        line.sort()
        await self.w.host(change)

    # ---- people ----

    async def user(self, user: int, name: str | None) -> None:
        if user not in self.users:
            self.users.add(user)
            await self.w.user(user, name)

    async def person(self, who: Person) -> int:
        """A display name with no (single) id in the export -> the user the database knows
        in the group by that name when there is exactly one, else the name's own stable
        id: one person of the group throughout (SPEC 9)."""
        if isinstance(who, int):
            return who
        uid = self.named.get(who)
        if uid is None:
            known = self.known_names.get(who, [])
            uid = known[0] if len(known) == 1 else name_only_id(self.chat_id, who)
            self.named[who] = uid
            self.summary.name_only += 1
            self.summary.name_only_known += int(len(known) == 1)
            await self.user(uid, who)
        return uid

    def before_tracking(self, who: int) -> None:
        """`who` was a member before the export's first event (SPEC 9)."""
        first = self.scan.first
        if who not in self.bots and first is not None and not self.is_host(who, first):
            self.baseline.add(who)

    async def membership(
        self,
        person: Person,
        kind: MemberKind,
        ts: datetime,
        seq: int,
        name: str | None,
        via: tuple[str | None, int | None] = (None, None),  # join source, inviter (SPEC 12)
    ) -> None:
        who = await self.person(person)
        if who not in self.seen:
            self.seen.add(who)
            if kind == MemberKind.LEAVE:  # leaving without a recorded join
                self.before_tracking(who)
        stamp = int(ts.timestamp())
        # the file is in time order: imported events over 60 s old match nothing any more
        while self.imported and self.imported[0][0] < stamp - DEDUP_WINDOW_S:
            self.imported.popleft()
        near = [(k, t) for k, t in self.existing.get(who, ()) if abs(t - stamp) <= DEDUP_WINDOW_S]
        near += [(k, t) for t, u, k in self.imported if u == who]
        if is_duplicate(kind, stamp, near):
            self.summary.skipped["joins/leaves already stored (same event within 60 s)"] += 1
            return
        self.imported.append((stamp, who, str(kind)))
        await self.user(who, name)
        await self.w.membership(
            MembershipEvent(self.chat_id, who, kind, ts, seq, "import", None, *via)
        )
        if kind == MemberKind.JOIN:
            self.summary.joins += 1
        else:
            self.summary.leaves += 1

    async def service(self, item: ServiceItem) -> None:
        # not a message (SPEC 4), but replies can point at it: they make no one active
        self.remember_target(item.message_id, item.ts_utc, Role.OTHER, None)
        effects = service_effects(item, self.scan.names)
        if effects.ignored:
            self.summary.skipped[
                f"service action {item.action or '(none)'} (nothing to record)"
            ] += 1
            return
        names = dict(effects.names)
        for host in effects.hosts:
            if not self.is_host(host, item.ts_utc):
                change = HostChange(
                    self.chat_id, host, item.ts_utc, True, item.message_id, "import"
                )
                await self.add_host(change)
            await self.user(host, names.get(host))
        for founder in effects.founders:
            who = await self.person(founder)
            self.seen.add(who)
            self.before_tracking(who)
        for kind, people in ((MemberKind.JOIN, effects.joins), (MemberKind.LEAVE, effects.leaves)):
            for person in people:
                name = names.get(person) if isinstance(person, int) else None
                via = import_join_source(item, person) if kind == MemberKind.JOIN else (None, None)
                await self.membership(person, kind, item.ts_utc, item.message_id, name, via)

    # ---- messages ----

    async def stored_post(self, message_id: int) -> StoredPost | None:
        """The message as already stored (recorded live), prefetched by id ranges."""
        if self.stored_range is None:
            return None
        lo, hi = self.stored_range
        if not lo <= message_id <= hi:
            return None
        if not self.stored_window[0] <= message_id < self.stored_window[1]:
            self.stored_window = (message_id, message_id + PREFETCH)
            self.stored = await self.w.stored_posts(self.chat_id, *self.stored_window)
        return self.stored.get(message_id)

    def remember_target(
        self, message_id: int, ts: datetime, role: Role, sender: int | None
    ) -> None:
        self.messages[message_id] = (int(ts.timestamp()), role, sender)
        if len(self.messages) > RECENT_MESSAGES:  # bounded memory: forget the oldest
            oldest = next(iter(self.messages))
            del self.messages[oldest]
            self.evicted_upto = max(oldest, self.evicted_upto or oldest)

    def remember(self, post: Post) -> None:
        self.remember_target(post.message_id, post.ts_utc, post.role, post.sender_id)
        window = timedelta(seconds=self.settings.discussion_window_s)
        while self.recent and self.recent[0].ts_utc < post.ts_utc - window:
            self.recent.popleft()
        if post.role == Role.HOST or (post.role == Role.MEMBER and post.is_question):
            self.recent.append(post)

    async def reply_target(self, target_id: int, ts: datetime) -> ReplyTarget:
        known = self.messages.get(target_id)
        if known is not None:
            return ReplyTarget(
                target_id, datetime.fromtimestamp(known[0], UTC), known[1], known[2]
            )
        stored = None
        lo, hi = self.stored_range or (0, -1)
        if lo <= target_id <= hi or (
            self.evicted_upto is not None and target_id <= self.evicted_upto
        ):
            # stored before the import, or imported and no longer in memory
            found = await self.w.stored_posts(self.chat_id, target_id, target_id + 1)
            stored = found.get(target_id)
        if stored is not None:  # the role at the time the target was sent wins
            return ReplyTarget(
                target_id, datetime.fromtimestamp(stored.ts, UTC), stored.role, stored.sender_id
            )
        # a service message, deleted, or before the export: a reply that makes no one active
        return ReplyTarget(target_id, ts, Role.OTHER, None)

    async def message(self, item: MessageItem) -> None:
        if item.peer is None:
            self.summary.skipped["messages without a sender"] += 1
            return
        mid = item.message_id
        if mid in self.messages:
            self.summary.skipped["items listed twice"] += 1
            return
        sender = message_sender(item.peer, self.chat.id, self.chat_id, self.bots)
        user_id = sender.user_id
        stored = await self.stored_post(mid)
        if stored is not None:  # the same message, recorded live: stored once (SPEC 2)
            self.summary.skipped["messages already stored"] += 1
            post = Post(
                self.chat_id,
                mid,
                datetime.fromtimestamp(stored.ts, UTC),
                stored.role,
                stored.sender_id,
                is_question=stored.is_question,
            )
            self.first_post(user_id, post.role)
            self.remember(post)
            return
        hosts = (
            frozenset((user_id,))
            if user_id and self.is_host(user_id, item.ts_utc)
            else frozenset()
        )
        role = sender_role(sender, self.chat_id, self.linked, hosts)
        post = Post(
            self.chat_id,
            mid,
            item.ts_utc,
            role,
            user_id,
            sender.sender_chat_id,
            is_question=role == Role.MEMBER
            and is_question(item.text, self.settings.question_markers),
        )
        self.first_post(user_id, role)
        if user_id is not None and role in (Role.MEMBER, Role.BOT):
            await self.user(user_id, item.sender_name)
        reply = None
        if item.reply_to is not None:
            reply = await self.reply_target(item.reply_to, item.ts_utc)
            marks = reply_marks(post, reply)
            self.summary.replies += 1
        else:
            window = timedelta(seconds=self.settings.discussion_window_s)
            while self.recent and self.recent[0].ts_utc < item.ts_utc - window:
                self.recent.popleft()
            marks = answer_marks(post, self.recent, self.settings.discussion_window_s)
        await self.w.post(post, reply, marks)
        self.summary.messages += 1
        self.remember(post)

    def first_post(self, user_id: int | None, role: Role) -> None:
        if user_id is not None and user_id not in self.seen:
            self.seen.add(user_id)
            if role == Role.MEMBER:  # posting without a recorded join
                self.before_tracking(user_id)

    async def add(self, raw: Any) -> None:
        item = parse_item(raw, self.clock)
        if isinstance(item, ServiceItem):
            await self.service(item)
        elif isinstance(item, MessageItem):
            await self.message(item)
        else:
            self.summary.skipped[item.reason] += 1

    async def finish(self) -> ImportSummary:
        s = self.summary
        s.baseline = len(self.baseline)
        first = self.scan.first
        if first is not None and (
            self.tracking_ts is None or int(first.timestamp()) < self.tracking_ts
        ):
            await self.w.set_tracking(self.chat_id, first, s.baseline)
            s.baseline_applied = True
            s.tracking_start = first
        elif self.tracking_ts is not None:
            s.tracking_start = datetime.fromtimestamp(self.tracking_ts, UTC)
        await self.w.bump(self.chat_id)
        return s


async def import_export(
    repo: Repo,
    config: Config,
    path: Path | str,
    chat_id: int | None = None,
    export_tz: str | None = None,
    hosts: Sequence[int] = (),
    bots: Sequence[int] = (),
    linked_channel: int | None = None,
) -> list[ImportSummary]:
    """Import a Telegram Desktop export: its group, or every group of a full-account export
    (only `chat_id`'s when given; for a single-chat export `chat_id` overrides its id).
    `linked_channel` (a Bot API id) is the group's linked channel, for one group only.

    All or nothing: raises ExportError, with the database unchanged, for a file that
    cannot be imported.
    """
    clock = Clock(export_tz)
    file = ExportFile(Path(path))
    scans = _scan(file, clock)
    selected = _select(file, scans, chat_id)
    if linked_channel is not None and len(selected) > 1:
        raise ExportError(
            f"{file.path}: --linked-channel is one group's: pick the group with --chat-id"
        )
    targets = {scan.chat.index: (scan, target) for scan, target in selected}
    summaries: list[ImportSummary] = []
    async with BulkWriter.transaction(repo.engine) as writer:
        current: _ChatImport | None = None
        for chat, raw in file.items("importing"):
            if raw is not None:
                if current is not None and current.chat.index == chat.index:
                    await current.add(raw)
                continue
            if current is not None:
                summaries.append(await current.finish())
                current = None
            if chat.index in targets:
                scan, target = targets[chat.index]
                target = await writer.resolve_chat_id(target)
                settings = config.for_chat(target)
                current = _ChatImport(
                    writer, scan, target, settings, clock, hosts, bots, linked_channel
                )
                await current.start()
        if current is not None:
            summaries.append(await current.finish())
    return summaries
