"""Webhook mode: 200 only once the rows are committed; two processes behind one URL on
one database store each update once (issue 7)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from bot.config import Config
from storage.models import MembershipEventRow, MessageRow
from storage.repo import Repo
from tests import tg
from tests.botapi_server import BOT_ID, TOKEN, FakeBotAPI
from tests.e2e import bot_running, free_port, make_config
from tests.test_kill_restart import day_updates, reference_rows, server_for_day, stored

CHAT = -100888
GROUP = tg.group(CHAT, "Camp")
T = int(datetime(2026, 11, 20, 2, 0, tzinfo=UTC).timestamp())
SECRET = hashlib.sha256(f"opsbot-webhook:{TOKEN}".encode()).hexdigest()




@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    server = FakeBotAPI().start()
    server.admins[CHAT] = [
        tg.member(tg.user(1), "creator"),
        tg.member(tg.user(BOT_ID, "opsbot", True), "administrator"),
    ]
    yield server
    server.stop()


def webhook_config(api: FakeBotAPI, db_url: str, port: int) -> Config:
    return replace(
        make_config(api, db_url),
        mode="webhook",
        webhook_port=port,
        webhook_url=f"https://bot.example.com:{port}/telegram",
    )


async def test_two_webhook_processes_store_each_update_once(api: FakeBotAPI, db_url: str) -> None:
    ports = [free_port(), free_port()]
    alice = tg.user(10, "Alice")
    updates = [
        {"update_id": 1}
        | tg.chat_member(GROUP, alice, T, tg.member(alice, "left"), tg.member(alice, "member")),
        {"update_id": 2} | tg.message(GROUP, 5, T + 10, alice, "hello?"),
    ]
    async with AsyncExitStack() as stack:
        for port in ports:
            await stack.enter_async_context(bot_running(webhook_config(api, db_url, port)))
        async with httpx.AsyncClient() as client:
            for update in updates:
                for port in ports:  # the same update reaches both processes
                    r = await client.post(
                        f"http://127.0.0.1:{port}/telegram",
                        content=json.dumps(update),
                        headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
                    )
                    assert r.status_code == 200
            forged = await client.post(
                f"http://127.0.0.1:{ports[0]}/telegram", content=json.dumps(updates[1])
            )
            assert forged.status_code == 403
        # answered 200: the rows are there already, once
        repo = await Repo.open(db_url)
        try:
            async with repo.engine.connect() as conn:
                joins = (
                    await conn.execute(
                        select(func.count()).select_from(MembershipEventRow.__table__)
                    )
                ).scalar_one()
                messages = (
                    await conn.execute(select(func.count()).select_from(MessageRow.__table__))
                ).scalar_one()
        finally:
            await repo.close()
        assert (joins, messages) == (1, 1)
    hooks = api.calls_of("setWebhook")
    assert len(hooks) == 2
    assert hooks[0].params["secret_token"] == SECRET


async def test_a_day_sent_to_two_webhook_processes_at_once_is_stored_as_by_one(
    tmp_path: Path, db_url: str
) -> None:
    """Each update of a scripted day reaches both processes at the same moment (as when
    Telegram retries on another instance): the rows equal those of one polling run."""
    items, updates = day_updates(tmp_path)
    expected = await reference_rows(tmp_path, items, updates)
    api = server_for_day(items)
    ports = [free_port(), free_port()]
    try:
        async with AsyncExitStack() as stack:
            for port in ports:
                await stack.enter_async_context(bot_running(webhook_config(api, db_url, port)))
            async with httpx.AsyncClient(timeout=30) as client:

                async def send(port: int, update: dict[str, Any]) -> int:
                    r = await client.post(
                        f"http://127.0.0.1:{port}/telegram",
                        content=json.dumps(update),
                        headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
                    )
                    return r.status_code

                for update_id, update in enumerate(updates, start=1):
                    update = {"update_id": update_id} | update
                    codes = await asyncio.gather(*(send(port, update) for port in ports))
                    assert codes == [200, 200]
    finally:
        api.stop()
    assert await stored(db_url) == expected
