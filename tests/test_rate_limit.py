"""Sending is rate-limited as Telegram asks; reading is not held up by it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.app import SendRateLimiter


async def test_reads_go_through_while_sends_wait_out_a_flood_pause() -> None:
    limiter = SendRateLimiter(max_retries=0)
    await limiter.initialize()
    calls: list[str] = []

    async def call(name: str) -> dict[str, Any]:
        calls.append(name)
        return {"ok": True}

    # as after a 429: every send waits until the pause is over
    limiter._retry_after_event.clear()
    read = limiter.process_request(
        call, ("getChatAdministrators",), {}, "getChatAdministrators", {"chat_id": -1}, None
    )
    assert await asyncio.wait_for(read, 1) == {"ok": True}
    send = limiter.process_request(
        call, ("sendMessage",), {}, "sendMessage", {"chat_id": -1}, None
    )
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(send, 0.3)
    assert calls == ["getChatAdministrators"]
    await limiter.shutdown()
