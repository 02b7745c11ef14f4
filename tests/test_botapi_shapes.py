"""The fake server and the test builders send JSON shaped as the Bot API documents it
(shared/botapi/botapi_subset.json: required fields present, no unknown fields, types)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests import tg
from tests.botapi_server import BOT_ID, FakeBotAPI

# the shared folder sits beside the repository (or beside the folder of its worktrees)
SPEC = next(
    (
        p / "shared" / "botapi" / "botapi_subset.json"
        for p in Path(__file__).resolve().parents[2:]
        if (p / "shared" / "botapi" / "botapi_subset.json").exists()
    ),
    Path(__file__).resolve().parents[2] / "shared" / "botapi" / "botapi_subset.json",
)
PRIMITIVES = {"Integer": int, "String": str, "Boolean": bool, "True": bool, "Float": float}


def types() -> dict[str, Any]:
    if not SPEC.exists():
        pytest.skip(f"{SPEC} not found (the shared folder sits beside the repository)")
    loaded: dict[str, Any] = json.loads(SPEC.read_text())["types"]
    return loaded


def problems(value: Any, type_name: str, path: str = "") -> list[str]:
    spec = types()
    if type_name.startswith("Array of "):
        if not isinstance(value, list):
            return [f"{path}: expected an array"]
        return [p for i, v in enumerate(value) for p in problems(v, type_name[9:], f"{path}[{i}]")]
    if type_name in PRIMITIVES:
        ok = isinstance(value, PRIMITIVES[type_name]) and not (
            type_name in ("Integer", "Float") and isinstance(value, bool)
        )
        if type_name == "Float" and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        return [] if ok else [f"{path}: expected {type_name}, got {value!r}"]
    t = spec[type_name]
    if "subtypes" in t:
        variants = [problems(value, sub, path) for sub in t["subtypes"]]
        return [] if any(not v for v in variants) else min(variants, key=len)
    if not isinstance(value, dict):
        return [f"{path}: expected {type_name} object"]
    out = [f"{path}.{k}: unknown field of {type_name}" for k in value if k not in t["fields"]]
    for name, field in t["fields"].items():
        if name not in value:
            if field["required"]:
                out.append(f"{path}.{name}: required by {type_name}")
            continue
        variants = [problems(value[name], ft, f"{path}.{name}") for ft in field["types"]]
        if all(variants):
            out += min(variants, key=len)
    return out


def test_builders_make_valid_updates() -> None:
    group, host, alice = tg.group(-100, "G"), tg.user(1), tg.user(10)
    link = tg.invite_link("https://t.me/+x", host, "x")
    post = tg.message(group, 5, 1, host, "hi")["message"]
    samples = [
        tg.chat_member(
            group, alice, 1, tg.member(alice, "left"), tg.member(alice, "member"), link
        ),
        tg.chat_member(
            group, host, 1, tg.member(alice, "restricted", False), tg.member(alice, "kicked")
        ),
        tg.chat_member(
            group,
            host,
            1,
            tg.member(alice, "member"),
            tg.member(alice, "administrator"),
            mine=True,
        ),
        tg.message(group, 6, 2, alice, "ok", reply_to=post),
        tg.message(group, 7, 3, alice, new_chat_members=[alice]),
        tg.message(
            group,
            8,
            4,
            tg.user(777000),
            "x",
            sender_chat=tg.channel(-200),
            is_automatic_forward=True,
        ),
        tg.message(group, 6, 2, alice, "edited", edited=True),
    ]
    for i, update in enumerate(samples):
        assert problems(update | {"update_id": i + 1}, "Update") == []


def test_forum_updates_are_valid_and_shaped_as_telegram_sends_them() -> None:
    forum, host, alice, bob = tg.forum(-300, "F"), tg.user(1), tg.user(10), tg.user(11)
    root = tg.topic_created(forum, 50, 1, host, "Homework")
    in_topic = tg.message(forum, 51, 2, alice, "q?", topic=root["message"])
    reply = tg.message(forum, 52, 3, bob, "a", reply_to=in_topic["message"], topic=root["message"])
    general = tg.message(forum, 53, 4, bob, "hi")
    chain = tg.message(tg.group(-400), 9, 5, bob, "a", reply_to=general["message"])
    for i, update in enumerate((root, in_topic, reply, general, chain)):
        assert problems(update | {"update_id": i + 1}, "Update") == []
    msg = in_topic["message"]  # sent in the topic without the reply button
    assert forum["is_forum"] is True
    assert (msg["message_thread_id"], msg["is_topic_message"]) == (50, True)
    assert msg["reply_to_message"]["forum_topic_created"] == {
        "name": "Homework",
        "icon_color": 0x6FB9F0,
    }
    explicit = reply["message"]  # an explicit reply inside the topic
    assert explicit["reply_to_message"]["message_id"] == 51
    assert (explicit["message_thread_id"], explicit["is_topic_message"]) == (50, True)
    # the General topic has no thread id; a reply chain outside topics has one, no topic
    assert "message_thread_id" not in general["message"]
    assert chain["message"]["message_thread_id"] == 53
    assert "is_topic_message" not in chain["message"]


def test_server_answers_are_valid() -> None:
    api = FakeBotAPI()
    api.admins[-100] = [tg.member(tg.user(1), "creator"), tg.member(tg.user(2), "administrator")]
    api.admins[-100].append(tg.member(tg.user(4, "Guard", True), "administrator"))
    api.members[(-100, 3)] = tg.member(tg.user(3), "member")
    api.chats[-100] = tg.group(-100) | {"linked_chat_id": -200}
    api.chats[-300] = tg.forum(-300)
    checks = [
        ("getMe", {}, "User"),
        ("sendMessage", {"chat_id": -100, "text": "x"}, "Message"),
        ("sendPhoto", {"chat_id": -100}, "Message"),
        ("sendDocument", {"chat_id": 5}, "Message"),
        ("getChat", {"chat_id": -100}, "ChatFullInfo"),
        ("getChatAdministrators", {"chat_id": -100}, "Array of ChatMember"),
        ("getChatMember", {"chat_id": -100, "user_id": 7}, "ChatMember"),
        ("getChatMemberCount", {"chat_id": -100}, "Integer"),
        ("getChatAdministrators", {"chat_id": -100, "return_bots": True}, "Array of ChatMember"),
        ("getChatMember", {"chat_id": -100, "user_id": 3}, "ChatMember"),
        (
            "sendMessage",
            {"chat_id": -300, "text": "x", "message_thread_id": 50},
            "Message",
        ),
    ]
    try:
        for method, params, type_name in checks:
            status, payload = api.answer(method, params)
            assert status == 200
            assert problems(payload["result"], type_name) == [], method
    finally:
        api.stop()


def test_server_honours_return_bots_and_counts_everyone() -> None:
    """As Telegram: bot admins other than the caller only with return_bots; the member
    count includes the bot itself, the admins, bot admins and every member."""
    api = FakeBotAPI()
    guard, me = tg.user(4, "Guard", True), tg.user(BOT_ID, "opsbot", True)
    api.admins[-100] = [
        tg.member(tg.user(1), "creator"),
        tg.member(guard, "administrator"),
        tg.member(me, "administrator"),
    ]
    api.members[(-100, 3)] = tg.member(tg.user(3), "member")
    api.members[(-100, 5)] = tg.member(tg.user(5), "left")
    try:
        ids = [
            [a["user"]["id"] for a in api.answer("getChatAdministrators", params)[1]["result"]]
            for params in ({"chat_id": -100}, {"chat_id": -100, "return_bots": True})
        ]
        assert ids == [[1, BOT_ID], [1, 4, BOT_ID]]
        assert api.count_everyone(-100, others=10) == 14  # 10 + creator, guard, bot, user 3
        assert api.answer("getChatMemberCount", {"chat_id": -100})[1]["result"] == 14
        plain = api.answer("sendMessage", {"chat_id": -100, "text": "x"})[1]["result"]
        assert "message_thread_id" not in plain
        # a thread id outside a forum is refused, as Telegram does
        refused = api.answer("sendMessage", {"chat_id": -100, "text": "x", "message_thread_id": 5})
        assert refused[0] == 400
    finally:
        api.stop()


def test_validator_catches_bad_shapes() -> None:
    assert problems({"id": 1, "first_name": "x"}, "User") == [".is_bot: required by User"]
    assert problems({"id": 1, "is_bot": False, "first_name": "x", "nick": 1}, "User")
