"""No update can stop ingest (issue 17): an update whose handling fails other than by the
database being unavailable, or that python-telegram-bot cannot parse, goes on the
dead-letter table `failed_updates`, is confirmed, and the updates after it are stored, in
polling and webhook mode, also after a restart. Update JSON and texts are never logged.
A transient database error still holds the queue and retries."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError
from telegram import Bot, Update

from bot.ingest import PARSE
from storage.models import MembershipEventRow, MessageRow
from storage.repo import Repo
from tests import tg
from tests.botapi_server import BOT_ID, TOKEN, FakeBotAPI
from tests.e2e import bot_running, make_config, settle
from tests.test_e2e_webhook import SECRET, free_port, webhook_config
from tests.test_kill_restart import config_file, start_bot

CHAT = -100777
GROUP = tg.group(CHAT, "Camp")
T = int(datetime(2026, 11, 20, 2, 0, tzinfo=UTC).timestamp())
CREATOR, ADMIN = tg.user(1, "Host"), tg.user(2, "Admin")
ALICE, BOB = tg.user(10, "Alice"), tg.user(11, "Bob")
MARKER = "MARKER-7f3a-never-logged"  # in every bad update: must never reach a log


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    server = FakeBotAPI().start()
    server.admins[CHAT] = [
        tg.member(CREATOR, "creator"),
        tg.member(ADMIN, "administrator"),
        tg.member(tg.user(BOT_ID, "opsbot", True), "administrator"),
    ]
    yield server
    server.stop()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Everything, PTB's own debug lines included."""
    caplog.set_level(logging.DEBUG)
    return caplog


def post(mid: int, text: str, sender: dict[str, Any] = ALICE) -> dict[str, Any]:
    return tg.message(GROUP, mid, T + mid, sender, text)


def command(mid: int, text: str, sender: dict[str, Any] = ADMIN) -> dict[str, Any]:
    name = text.split()[0]
    return tg.message(
        GROUP,
        mid,
        T + mid,
        sender,
        text,
        entities=[{"type": "bot_command", "offset": 0, "length": len(name)}],
    )


async def stored_messages(db_url: str) -> list[int]:
    repo = await Repo.open(db_url)
    try:
        async with repo.engine.connect() as conn:
            rows = await conn.execute(
                select(MessageRow.message_id)
                .where(MessageRow.chat_id == CHAT)
                .order_by(MessageRow.message_id)
            )
            return [r[0] for r in rows]
    finally:
        await repo.close()


async def stored_joins(db_url: str) -> list[int]:
    repo = await Repo.open(db_url)
    try:
        async with repo.engine.connect() as conn:
            rows = await conn.execute(
                select(MembershipEventRow.user_id).where(MembershipEventRow.chat_id == CHAT)
            )
            return sorted(r[0] for r in rows)
    finally:
        await repo.close()


async def dead_letters(db_url: str) -> list[tuple[int, str, str]]:
    repo = await Repo.open(db_url)
    try:
        return [(u, err, handler) for u, _, err, handler in await repo.failed_updates()]
    finally:
        await repo.close()


def messages(logs: pytest.LogCaptureFixture) -> list[str]:
    """What a user running `opsbot run` sees (INFO and up)."""
    return [r.getMessage() for r in logs.records if r.levelno >= logging.INFO]


def assert_nothing_leaked(logs: pytest.LogCaptureFixture) -> None:
    assert not [r for r in logs.records if MARKER in r.getMessage()]
    assert MARKER not in logs.text
    assert not [r for r in logs.records if r.levelno >= logging.CRITICAL]
    assert "Traceback" not in logs.text
    assert "database unavailable" not in logs.text


# ---- a handler that fails the same way every time --------------------------------------


async def test_a_failing_command_is_dead_lettered_and_polling_goes_on(
    api: FakeBotAPI, db_url: str, logs: pytest.LogCaptureFixture
) -> None:
    """Telegram refuses every message of the bot in the group (the bot may not write
    there): the command's reply fails each time it is tried; before, such a failure could
    wedge ingest for every group."""
    api.forbidden_chats.add(CHAT)
    async with bot_running(make_config(api, db_url)):
        ids = api.push(
            post(1, "before"),
            command(2, "/settings language en"),
            post(3, "after"),
            tg.chat_member(GROUP, BOB, T + 4, tg.member(BOB, "left"), tg.member(BOB, "member")),
        )
        await settle(api)
        assert await asyncio.to_thread(api.wait_confirmed, 10)  # all confirmed
    poison = ids[1]
    assert await dead_letters(db_url) == [(poison, "Forbidden", "handlers.admin.on_settings")]
    assert await stored_messages(db_url) == [1, 2, 3]  # the command is a post too
    assert await stored_joins(db_url) == [11]
    lines = [m for m in messages(logs) if f"update {poison} failed" in m]
    assert len(lines) == 1
    assert "handlers.admin.on_settings" in lines[0]
    assert "Forbidden" in lines[0]
    assert_nothing_leaked(logs)

    # after a restart the poison update is not fetched again, nor handled again
    replies = len(api.calls_of("sendMessage"))
    first_poll = len(api.calls_of("getUpdates"))
    async with bot_running(make_config(api, db_url)):
        api.push(post(5, "later"))
        await settle(api)
    offsets = [int(c.params["offset"]) for c in api.calls_of("getUpdates")[first_poll:]]
    assert offsets
    assert min(offsets) > poison
    first_reply = [
        c for c in api.calls_of("sendMessage")[:replies] if "language" in c.params["text"]
    ]
    assert first_reply  # the reply the first run tried
    again = [c for c in api.calls_of("sendMessage")[replies:] if "language" in c.params["text"]]
    assert again == []
    assert await stored_messages(db_url) == [1, 2, 3, 5]
    assert await dead_letters(db_url) == [(poison, "Forbidden", "handlers.admin.on_settings")]


async def test_a_long_settings_timezone_never_stops_ingest(
    api: FakeBotAPI, db_url: str, logs: pytest.LogCaptureFixture
) -> None:
    """The issue's case: `/settings timezone <300-character word>` from an admin (the zone
    lookup raised OSError, taken for the database being down). Whatever the command
    answers, the updates after it are stored, and nothing waits for the database."""
    async with bot_running(make_config(api, db_url)):
        ids = api.push(
            command(1, "/settings timezone " + "x" * 300),
            post(2, "after"),
        )
        await settle(api)
        assert await asyncio.to_thread(api.wait_confirmed, 10)  # all confirmed
    assert await stored_messages(db_url) == [1, 2]
    assert "database unavailable" not in logs.text
    async with bot_running(make_config(api, db_url)):
        await settle(api)
    polls = api.calls_of("getUpdates")
    assert int(polls[-1].params["offset"]) > ids[0]


async def test_a_poison_update_inside_a_batch_is_dead_lettered_and_the_rest_stored(
    api: FakeBotAPI, db_url: str, logs: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Posts are stored in one transaction per fetch: one of them fails in its recorder
    (fault injected: a bug that hits one message shape), the batch is rolled back and
    redone one by one; only that update is dead-lettered."""
    import handlers.messages

    real = handlers.messages.is_question

    def breaks_on_marker(text: str | None, markers: Any) -> bool:
        if text and MARKER in text:
            raise ValueError("a bug that only this message triggers")
        return real(text, markers)

    monkeypatch.setattr(handlers.messages, "is_question", breaks_on_marker)
    # pushed before start: one fetch, one batch
    ids = api.push(
        post(1, "one"),
        post(2, "two"),
        post(3, f"poison {MARKER}", BOB),
        post(4, "four"),
        tg.chat_member(GROUP, BOB, T + 5, tg.member(BOB, "left"), tg.member(BOB, "member")),
    )
    async with bot_running(make_config(api, db_url)):
        await settle(api)
        assert await asyncio.to_thread(api.wait_confirmed, 10)  # all confirmed
    assert await dead_letters(db_url) == [(ids[2], "ValueError", "handlers.messages.on_post")]
    assert await stored_messages(db_url) == [1, 2, 4]
    assert await stored_joins(db_url) == [11]
    assert len([m for m in messages(logs) if f"update {ids[2]} failed" in m]) == 1
    assert_nothing_leaked(logs)


async def test_a_failing_command_is_dead_lettered_in_webhook_mode(
    api: FakeBotAPI, db_url: str, logs: pytest.LogCaptureFixture
) -> None:
    api.forbidden_chats.add(CHAT)
    port = free_port()
    updates = [
        {"update_id": 1} | post(1, "before"),
        {"update_id": 2} | command(2, "/settings language en"),
        {"update_id": 3} | post(3, "after"),
        {"update_id": 2} | command(2, "/settings language en"),  # Telegram sends it again
    ]
    async with (
        bot_running(webhook_config(api, db_url, port)),
        httpx.AsyncClient(timeout=30) as client,
    ):
        codes = [await send(client, port, update) for update in updates]
    assert codes == [200, 200, 200, 200]  # 200: Telegram does not send it forever
    assert await dead_letters(db_url) == [(2, "Forbidden", "handlers.admin.on_settings")]
    assert await stored_messages(db_url) == [1, 2, 3]
    assert_nothing_leaked(logs)


async def send(client: httpx.AsyncClient, port: int, update: dict[str, Any]) -> int:
    r = await client.post(
        f"http://127.0.0.1:{port}/telegram",
        content=json.dumps(update),
        headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
    )
    return r.status_code


# ---- updates python-telegram-bot cannot parse ------------------------------------------


def admin_without_rights() -> dict[str, Any]:
    """A chat_member whose new administrator lacks its rights flags (can_manage_chat …)."""
    bob = tg.user(11, MARKER)
    new = {"status": "administrator", "user": bob, "can_be_edited": False, "is_anonymous": False}
    return tg.chat_member(GROUP, CREATOR, T + 2, tg.member(bob, "member"), new)


def far_date() -> dict[str, Any]:
    return tg.message(GROUP, 2, 253402300800, ALICE, f"from the future {MARKER}")


def poll_without_persistent_id() -> dict[str, Any]:
    """As older self-hosted Bot API servers send it: options lack persistent_id."""
    return {
        "poll": {
            "id": "5001",
            "question": f"which day? {MARKER}",
            "options": [
                {"text": f"Monday {MARKER}", "voter_count": 1},
                {"text": "Tuesday", "voter_count": 0},
            ],
            "total_voter_count": 1,
            "is_closed": False,
            "is_anonymous": True,
            "type": "regular",
            "allows_multiple_answers": False,
            "allows_revoting": False,
            "members_only": False,
        }
    }


def restricted_without_flags() -> dict[str, Any]:
    """Another real one: a restricted member without the permission flags."""
    new = {"status": "restricted", "user": tg.user(11, MARKER), "is_member": True}
    return tg.chat_member(GROUP, CREATOR, T + 2, tg.member(BOB, "member"), new | {"until_date": 0})


BAD = {
    "admin_without_rights": (admin_without_rights, "TypeError"),
    "date_253402300800": (far_date, "ValueError"),
    "poll_without_persistent_id": (poll_without_persistent_id, "TypeError"),
    "restricted_without_flags": (restricted_without_flags, "TypeError"),
}


def repaired(name: str, update: dict[str, Any]) -> dict[str, Any]:
    """The same update with only its fault fixed."""
    fixed = copy.deepcopy(update)
    if name == "admin_without_rights":
        fixed["chat_member"]["new_chat_member"] |= tg.ADMIN_RIGHTS
    elif name == "date_253402300800":
        fixed["message"]["date"] = 253402300799
    elif name == "poll_without_persistent_id":
        for i, option in enumerate(fixed["poll"]["options"]):
            option["persistent_id"] = str(i)
    else:
        fixed["chat_member"]["new_chat_member"] |= tg.RESTRICTED_RIGHTS
    return fixed


@pytest.mark.parametrize("name", list(BAD))
def test_the_bad_shapes_really_fail_to_parse_and_only_by_their_fault(name: str) -> None:
    make, error = BAD[name]
    update = {"update_id": 7} | make()
    bot = Bot(TOKEN)
    with pytest.raises(Exception) as raised:  # noqa: PT011 (as PTB raises it)
        Update.de_json(update, bot)
    assert type(raised.value).__name__ == error
    assert Update.de_json(repaired(name, update), bot).update_id == 7


@pytest.mark.parametrize("name", list(BAD))
async def test_an_unparseable_update_is_dead_lettered_and_polling_goes_on(
    name: str, api: FakeBotAPI, db_url: str, logs: pytest.LogCaptureFixture
) -> None:
    make, error = BAD[name]
    async with bot_running(make_config(api, db_url)):
        ids = api.push(
            post(1, "before"),
            make(),
            post(3, "after"),
            tg.chat_member(
                GROUP, ALICE, T + 4, tg.member(ALICE, "left"), tg.member(ALICE, "member")
            ),
        )
        await settle(api)
        # alone, last of its fetch: the offset still moves past it
        (alone,) = api.push(make())
        assert await asyncio.to_thread(api.wait_confirmed, 10)
    assert await dead_letters(db_url) == [(ids[1], error, PARSE), (alone, error, PARSE)]
    assert await stored_messages(db_url) == [1, 3]
    assert await stored_joins(db_url) == [10]
    lines = [m for m in messages(logs) if f"update {ids[1]} failed" in m]
    assert len(lines) == 1
    assert error in lines[0]
    assert_nothing_leaked(logs)


@pytest.mark.parametrize("name", list(BAD))
async def test_an_unparseable_webhook_update_is_dead_lettered_and_answered_200(
    name: str, api: FakeBotAPI, db_url: str, logs: pytest.LogCaptureFixture
) -> None:
    make, error = BAD[name]
    port = free_port()
    async with (
        bot_running(webhook_config(api, db_url, port)),
        httpx.AsyncClient(timeout=30) as client,
    ):
        codes = [
            await send(client, port, {"update_id": 1} | post(1, "before")),
            await send(client, port, {"update_id": 2} | make()),
            await send(client, port, {"update_id": 2} | make()),  # sent again: once
            await send(client, port, {"update_id": 3} | post(3, "after")),
        ]
    assert codes == [200, 200, 200, 200]
    assert await dead_letters(db_url) == [(2, error, PARSE)]
    assert await stored_messages(db_url) == [1, 3]
    assert_nothing_leaked(logs)


# ---- a transient error still holds the queue -------------------------------------------


def transient_error(db_url: str) -> Callable[[], Exception]:
    """What the driver raises when the database is busy: SQLite locked, a PostgreSQL
    deadlock."""
    if db_url.startswith("sqlite"):
        return lambda: OperationalError(
            "(injected)", None, sqlite3.OperationalError("database is locked")
        )
    return lambda: OperationalError(
        "(injected)", None, asyncpg.exceptions.DeadlockDetectedError("deadlock detected")
    )


async def test_a_transient_error_still_holds_the_queue_and_retries(
    api: FakeBotAPI, db_url: str, logs: pytest.LogCaptureFixture
) -> None:
    busy = threading.Event()
    error = transient_error(db_url)

    def fail_while_busy(*_: Any) -> None:
        if busy.is_set():
            raise error()

    async with bot_running(make_config(api, db_url)) as app:
        repo: Repo = app.bot_data["repo"]
        event.listen(repo.engine.sync_engine, "before_cursor_execute", fail_while_busy)
        api.push(post(1, "before"))
        await settle(api)
        busy.set()
        ids = api.push(post(2, "during"), command(3, "/retention"), post(4, "during too"))
        await asyncio.sleep(2)
        assert api.updates  # nothing of the busy time was confirmed, nothing skipped
        assert api.updates[0]["update_id"] == ids[0]
        busy.clear()
        await settle(api, wait_s=60)
    assert await stored_messages(db_url) == [1, 2, 3, 4]
    assert await dead_letters(db_url) == []
    assert sum("database unavailable" in m for m in messages(logs)) == 1
    assert sum("available again" in m for m in messages(logs)) == 1


async def test_opsbot_run_logs_no_update_json_and_goes_on(
    api: FakeBotAPI, db_url: str, tmp_path: Path
) -> None:
    """`opsbot run` as a user starts it, its log file read whole: every bad shape and a
    failing command in one stream; all confirmed, the good updates stored, and neither
    texts nor PTB's "Error while parsing updates" in the log."""
    api.forbidden_chats.add(CHAT)
    stream: list[dict[str, Any]] = [post(1, "first")]
    for i, (make, _) in enumerate(BAD.values()):
        stream += [make(), post(10 + i, f"good {i}")]
    stream += [command(20, f"/settings language {MARKER}"), post(21, "last")]
    ids = api.push(*stream)
    log_path = tmp_path / "bot.log"
    with log_path.open("ab") as log:
        proc = start_bot(config_file(tmp_path, api, db_url), log)
        try:
            assert await asyncio.to_thread(api.wait_confirmed, 60), "not all confirmed"
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    text = log_path.read_text()
    assert MARKER not in text
    assert "Traceback" not in text
    assert "Error while parsing updates" not in text
    assert "database unavailable" not in text
    assert await stored_messages(db_url) == [1, 10, 11, 12, 13, 20, 21]
    dead = await dead_letters(db_url)
    assert [d[0] for d in dead] == [ids[2 * i + 1] for i in range(len(BAD))] + [ids[-2]]
    assert sum(f"update {u} failed in " in text for u, _, _ in dead) == len(dead)
