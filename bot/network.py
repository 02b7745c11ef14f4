"""Reaching the Bot API: requests through the configured proxy, and a start-up that waits
for a Bot API it cannot reach (network down, Telegram blocked, proxy down) instead of dying."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit

from telegram._utils.types import ODVInput
from telegram.error import NetworkError
from telegram.request import BaseRequest, HTTPXRequest, RequestData

from bot.config import Config

log = logging.getLogger(__name__)

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 30.0
# 5xx: a proxy or Telegram's front end answering for a Bot API it cannot reach itself
SERVER_ERROR = 500


def shown_url(url: str) -> str:
    """scheme://host[:port][/path] without a user name or password."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"


def bot_api_place(config: Config) -> str:
    """Where the Bot API is, for log lines: its root (never /bot<token>) and the proxy."""
    place = shown_url(config.api_base_url)
    return f"{place} (through the proxy {shown_url(config.proxy)})" if config.proxy else place


def short_reason(exc: NetworkError) -> str:
    """`ConnectError: All connection attempts failed`: the transport error, on one line."""
    cause = exc.__cause__ or exc
    text = str(cause).strip().splitlines()[0][:120] if str(cause).strip() else ""
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


class Reachability:
    """Shared by the bot's request objects. While `waiting` (set for `opsbot run`'s start-up
    only), a request that cannot reach the Bot API is retried with back-off; one line is
    logged when it is lost and one when it is reached again. Otherwise errors go to their
    callers (ingest retries them; `opsbot check` reports them)."""

    def __init__(self, place: str) -> None:
        self.place = place
        self.waiting = False
        self._lost_at: float | None = None

    def lost(self, reason: str) -> None:
        if self._lost_at is None:
            self._lost_at = time.monotonic()
            log.warning("cannot reach the Bot API at %s: %s; retrying", self.place, reason)

    def reached(self) -> None:
        if self._lost_at is not None:
            waited_s = time.monotonic() - self._lost_at
            self._lost_at = None
            log.info("reached the Bot API at %s again after %.0f s", self.place, waited_s)


class WaitingRequest(HTTPXRequest):
    """PTB's HTTPXRequest (with the proxy, if any) that waits out an unreachable Bot API
    while the bot starts: every start-up call (getMe, admin lists, setMyCommands,
    deleteWebhook/setWebhook) goes through here, so none of them ends the process."""

    def __init__(
        self, reach: Reachability, *, connection_pool_size: int, proxy: str | None
    ) -> None:
        super().__init__(connection_pool_size=connection_pool_size, proxy=proxy)
        self.reach = reach

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        delay_s = FIRST_DELAY_S
        while True:
            try:
                code, payload = await super().do_request(
                    url,
                    method,
                    request_data,
                    read_timeout,
                    write_timeout,
                    connect_timeout,
                    pool_timeout,
                )
            except NetworkError as exc:  # TimedOut included
                if not self.reach.waiting:
                    raise
                self.reach.lost(short_reason(exc))
            else:
                if code < SERVER_ERROR or not self.reach.waiting:
                    self.reach.reached()
                    return code, payload
                self.reach.lost(f"HTTP {code}")
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, MAX_DELAY_S)


class StartupStopped(Exception):  # noqa: N818 (not an error: a stop asked for)
    """Stopped (SIGTERM, Ctrl-C) before start-up finished, e.g. while waiting for the Bot API."""


async def unless_stopped(step: Coroutine[Any, Any, Any], stop: asyncio.Event | None) -> None:
    """Run a start-up step; if `stop` is set first, cancel it and raise StartupStopped."""
    if stop is None:
        await step
        return
    task = asyncio.ensure_future(step)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, stopped):
            pending.cancel()
        await asyncio.gather(task, stopped, return_exceptions=True)
    if task not in done:
        raise StartupStopped
    task.result()  # the step's own error, if any


def bot_api_requests(config: Config) -> tuple[Reachability, WaitingRequest, WaitingRequest]:
    """The reachability state, the bot's request and the getUpdates request (PTB's pool
    sizes: 256 for calls, 1 for the long poll)."""
    reach = Reachability(bot_api_place(config))
    return (
        reach,
        WaitingRequest(reach, connection_pool_size=256, proxy=config.proxy),
        WaitingRequest(reach, connection_pool_size=1, proxy=config.proxy),
    )
