"""Small builders of Telegram Desktop exports (`result.json`) for import tests.

Two format generations, as Telegram Desktop wrote them:
- current (`legacy=False`): `"user123"` ids and `date_unixtime`;
- before 2021 (`legacy=True`): plain integer ids and only `date`, the exporting
  computer's local time (LEGACY_TZ here), no `date_unixtime`.

Times are given as seconds after T0.

Shapes follow Telegram Desktop's JSON writer (export_output_json.cpp): an id is
`"user123"`, `"channel123"` or `"chat123"`; a name is the peer's display name ("first last"
for users, the title for chats), `null` when it is empty (a deleted account); the people
someone else added or removed (`invite_members`, `remove_members`) and `create_group`'s
are a `members` list of display names only, never ids; `forwarded_from` and `saved_from`
are names, not ids.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

T0 = 1_795_000_000  # 2026-11-18 11:06:40 UTC
LEGACY_TZ = "Asia/Shanghai"

Person = tuple[str, int]  # (display name, user id)
Channel = tuple[str, int]  # (title, the channel's export id: "channel<id>")


def at(dt: int) -> datetime:
    """The UTC time of an item written at T0 + dt."""
    return datetime.fromtimestamp(T0 + dt, UTC)


def _dates(dt: int, legacy: bool) -> dict[str, str]:
    if legacy:
        local = at(dt).astimezone(ZoneInfo(LEGACY_TZ)).replace(tzinfo=None)
        return {"date": local.isoformat(timespec="seconds")}
    local = at(dt).replace(tzinfo=None)  # what a computer on UTC would write
    return {"date": local.isoformat(timespec="seconds"), "date_unixtime": str(T0 + dt)}


def _uid(uid: int, legacy: bool) -> int | str:
    return uid if legacy else f"user{uid}"


def service(
    mid: int, dt: int, actor: Person | None, action: str, legacy: bool = False, **extra: Any
) -> dict[str, Any]:
    item: dict[str, Any] = {"id": mid, "type": "service", **_dates(dt, legacy)}
    if actor is not None:
        item["actor"] = actor[0]
        item["actor_id"] = _uid(actor[1], legacy)
    item["action"] = action
    item.update(extra)
    item.setdefault("text", "")
    if not legacy:
        item.setdefault("text_entities", [])
    return item


def join_by_link(mid: int, dt: int, who: Person, legacy: bool = False) -> dict[str, Any]:
    return service(mid, dt, who, "join_group_by_link", legacy, inviter="Group")


def join_by_request(mid: int, dt: int, who: Person, legacy: bool = False) -> dict[str, Any]:
    return service(mid, dt, who, "join_group_by_request", legacy)


def invite(
    mid: int, dt: int, inviter: Person, names: list[str | None], legacy: bool = False
) -> dict[str, Any]:
    """`invite_members`: the actor added people, named only (None: a deleted account)."""
    return service(mid, dt, inviter, "invite_members", legacy, members=names)


def remove(
    mid: int, dt: int, actor: Person, names: list[str | None], legacy: bool = False
) -> dict[str, Any]:
    """`remove_members`: with the actor's own name, the actor left on their own; else the
    actor removed someone, named only (None: a deleted account)."""
    return service(mid, dt, actor, "remove_members", legacy, members=names)


def create_group(
    mid: int, dt: int, creator: Person, names: list[str], title: str = "Camp", legacy: bool = False
) -> dict[str, Any]:
    return service(mid, dt, creator, "create_group", legacy, title=title, members=names)


def topic_created(
    mid: int, dt: int, actor: Person, title: str = "Topic", legacy: bool = False
) -> dict[str, Any]:
    """A forum topic opens: its id is the topic's. A message sent in the topic has it as
    `reply_to_message_id` (the export keeps no other topic field, and an explicit reply
    in a topic names only the message it replies to)."""
    return service(mid, dt, actor, "topic_created", legacy, title=title)


def message(
    mid: int,
    dt: int,
    sender: Person | None,
    text: str | list[Any] = "hi",
    reply_to: int | None = None,
    legacy: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """A message from a user (sender None: no `from_id` at all)."""
    item: dict[str, Any] = {"id": mid, "type": "message", **_dates(dt, legacy)}
    if sender is not None:
        item["from"] = sender[0]
        item["from_id"] = _uid(sender[1], legacy)
    if reply_to is not None:
        item["reply_to_message_id"] = reply_to
    item["text"] = text
    item.update(extra)
    return item


def chat_post(
    mid: int,
    dt: int,
    peer: str,
    name: str,
    text: str = "news",
    reply_to: int | None = None,
) -> dict[str, Any]:
    """A message sent as a chat: `peer` is e.g. "channel4242" (the group itself), or a
    channel's id when someone posts as that channel."""
    item = message(mid, dt, None, text, reply_to)
    item["from"] = name
    item["from_id"] = peer
    return item


def auto_forward(mid: int, dt: int, channel: Channel, text: str = "new post") -> dict[str, Any]:
    """A linked channel's post as its discussion group shows it: sent by the channel,
    forwarded from it and saved from it (by name), with no reply."""
    item = chat_post(mid, dt, f"channel{channel[1]}", channel[0], text)
    item = {k: v for k, v in item.items() if k != "text"}
    item |= {"forwarded_from": channel[0], "saved_from": channel[0], "text": text}
    return item


def chat(
    items: list[dict[str, Any]],
    type_: str = "private_supergroup",
    export_id: int = 4242,
    name: str = "Camp",
) -> dict[str, Any]:
    """A single-chat export: {name, type, id, messages}."""
    return {"name": name, "type": type_, "id": export_id, "messages": items}


def account(chats: list[dict[str, Any]]) -> dict[str, Any]:
    """A full-account export: the chats under {"chats": {"list": [...]}}."""
    return {
        "about": "Here is the data you requested.",
        "personal_information": {"user_id": 1, "first_name": "Me"},
        "contacts": {"about": "", "list": [{"first_name": "A", "phone_number": "+1"}]},
        "chats": {"about": "", "list": chats},
        "left_chats": {"about": "", "list": []},
    }


def write(tmp_path: Path, data: Any, name: str = "result.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


HOST, ANN, BEN, CAT, DAN = ("Host", 1), ("Ann", 10), ("Ben", 11), ("Cat", 12), ("Dan", 13)


def camp_day() -> list[dict[str, Any]]:
    """One camp day with every kind of item (tests/test_cli_offline.py checks its report).

    With `--host 1`: Ann is in create_group (baseline 1); Ben, Cat, Dan join, and "Nobody
    Known", invited and never seen with an id (one person known by name only); Ben
    leaves, Dan is removed. Ben and Cat
    reply to host posts (the anonymous admin's included); Dan answers Cat's question
    without replying, Ann replies to Dan; Dan's last message comes too late to answer.
    """
    deleted = message(14, 900, None, "hi")
    deleted["from"] = "Deleted Account"  # no from_id: no sender
    return [
        create_group(1, 0, HOST, ["Host", "Ann"]),
        join_by_link(2, 60, BEN),
        invite(3, 120, HOST, ["Cat", "Nobody Known"]),
        join_by_request(4, 130, DAN),
        message(5, 200, HOST, "Day 1: reply with your goal"),
        message(6, 260, BEN, "ship it", reply_to=5),
        message(7, 300, CAT, "作业怎么交"),
        message(8, 400, DAN, "看群公告"),  # answers Cat without replying
        message(9, 500, ANN, "hello", reply_to=8),  # member-to-member reply
        chat_post(10, 550, "channel4242", "Camp", "anonymous admin post"),
        message(11, 600, CAT, "thanks", reply_to=10),
        remove(12, 700, BEN, ["Ben"]),  # Ben leaves
        remove(13, 800, HOST, ["Dan"]),  # Dan is removed
        deleted,
        service(15, 950, HOST, "pin_message", message_id=5),
        message(16, 1000, CAT, "again?"),
        message(17, 1000 + 601, DAN, "too late"),  # outside the 10-minute window
    ]
