"""Running the real Application against the fake Bot API server, as `opsbot run` does."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bot.app import build_application, running
from bot.config import Config, GroupSettings
from bot.context import OpsApplication
from tests import tg
from tests.botapi_server import TOKEN, FakeBotAPI

SENTINEL_USER = 424242


def free_port() -> int:
    """A local port nothing listens on now (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_config(api: FakeBotAPI, db_url: str, **defaults: Any) -> Config:
    return Config(
        token=TOKEN,
        api_base_url=api.base_url,
        storage_url=db_url,
        defaults=GroupSettings(**defaults),
    )


@asynccontextmanager
async def bot_running(config: Config) -> AsyncIterator[OpsApplication]:
    async with running(build_application(config), poll_timeout=1) as app:
        yield app


async def settle(api: FakeBotAPI, wait_s: float = 15.0) -> None:
    """Wait until every update pushed so far was handled: a private /start is the sentinel
    (updates are processed in order, so its reply means all before it are done)."""
    me = tg.user(SENTINEL_USER, "Sentinel")
    chat = {"id": SENTINEL_USER, "type": "private", "first_name": "Sentinel"}
    before = len(
        [c for c in api.calls_of("sendMessage") if int(c.params["chat_id"]) == SENTINEL_USER]
    )
    api.push(
        tg.message(
            chat,
            1,
            1_700_000_000,
            me,
            "/start",
            entities=[{"type": "bot_command", "offset": 0, "length": 6}],
        )
    )

    def done() -> bool:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            sent = [
                c for c in api.calls_of("sendMessage") if int(c.params["chat_id"]) == SENTINEL_USER
            ]
            if len(sent) > before:
                return True
            time.sleep(0.02)
        return False

    assert await asyncio.to_thread(done), "the bot did not process the updates in time"
