"""Long polling that confirms an update to Telegram only after its rows are committed.

python-telegram-bot's Updater confirms (by the next getUpdates offset) what it fetched,
not what was stored: a crash in between loses updates. Here the offset lives in the
database and moves past an update only once its handlers have finished; after `kill -9`
Telegram delivers the unconfirmed updates again, and idempotent storage stores them once.
When the database is unavailable the same update is retried with back-off, and nothing
new is fetched until it is stored.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError
from telegram import Update
from telegram.error import NetworkError, RetryAfter, TimedOut
from telegram.ext import Application

from storage.repo import Repo

log = logging.getLogger(__name__)
OFFSET_KEY = "updates_offset"
MAX_BACKOFF_S = 30.0
DB_ERRORS = (OperationalError, DBAPIError, OSError, ConnectionError)


def note_failure(
    application: Application[Any, Any, Any, Any, Any, Any],
    update: object,
    error: BaseException | None,
) -> None:
    """Called by the error handler: a database failure means the update must be retried."""
    if isinstance(update, Update) and isinstance(error, DB_ERRORS):
        application.bot_data.setdefault("db_failed_updates", set()).add(update.update_id)


async def handled(application: Application[Any, Any, Any, Any, Any, Any], update: Update) -> bool:
    """Run the handlers; False if a database failure left the update not stored."""
    failed: set[int] = application.bot_data.setdefault("db_failed_updates", set())
    failed.discard(update.update_id)
    await application.process_update(update)
    return update.update_id not in failed


async def poll_committed(
    application: Application[Any, Any, Any, Any, Any, Any], stop: asyncio.Event, poll_s: int = 10
) -> None:
    repo: Repo = application.bot_data["repo"]
    offset = await _retry(lambda: repo.get_state(OFFSET_KEY), stop)
    backoff = 0.5
    while not stop.is_set():
        try:
            updates = await application.bot.get_updates(
                offset=offset, timeout=poll_s, allowed_updates=Update.ALL_TYPES
            )
        except RetryAfter as exc:
            await _sleep(stop, _seconds(exc.retry_after))
            continue
        except (TimedOut, NetworkError):
            await _sleep(stop, backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)
            continue
        backoff = 0.5
        for update in updates:
            while not await handled(application, update):
                log.warning(
                    "database unavailable: update %s kept, retrying in %.1f s",
                    update.update_id,
                    backoff,
                )
                if await _sleep(stop, backoff):
                    return
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            backoff = 0.5
            offset = update.update_id + 1
            if stop.is_set():
                break
        if updates:
            # once per batch: what a crash replays from the batch is stored once anyway
            await _retry(lambda o=offset: repo.set_state(OFFSET_KEY, o), stop)


def _seconds(value: Any) -> float:
    return float(value.total_seconds() if hasattr(value, "total_seconds") else value)


async def _sleep(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep unless stopped; True if stopped."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


async def _retry(call: Any, stop: asyncio.Event) -> Any:
    backoff = 0.5
    while True:
        try:
            return await call()
        except DB_ERRORS as exc:
            log.warning(
                "database unavailable (%s), retrying in %.1f s", exc.__class__.__name__, backoff
            )
            if await _sleep(stop, backoff):
                raise
            backoff = min(backoff * 2, MAX_BACKOFF_S)
