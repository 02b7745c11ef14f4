"""Long polling that confirms an update to Telegram only after its rows are committed.

python-telegram-bot's Updater confirms (by the next getUpdates offset) what it fetched,
not what was stored: a crash in between loses updates. Here the offset lives in the
database and moves past an update only once its handlers have finished; after `kill -9`
Telegram delivers the unconfirmed updates again, and idempotent storage stores them once.
When the database is unavailable the same update is retried with back-off, and nothing
new is fetched until it is stored.

Updates that only record (posts, joins, leaves in groups) are handled in batches: all the
updates of a fetch, or all webhook requests waiting at that moment, in one transaction.
Commands, button presses and the bot's own membership changes talk to Telegram, so each
of them runs alone, after the batch before it is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError
from telegram import Update
from telegram.error import NetworkError, RetryAfter, TelegramError, TimedOut
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


def only_records(update: Update) -> bool:
    """An update whose handlers only write rows: safe to batch (and to redo after a
    rolled-back batch), as it neither answers in chat nor calls Telegram, bar the first
    sight of a group (start_tracking), which is idempotent."""
    if update.chat_member is not None:
        return True
    msg = update.message
    if msg is None or msg.chat.type not in ("group", "supergroup"):
        return False
    entities = (*(msg.entities or ()), *(msg.caption_entities or ()))
    return not any(e.type == "bot_command" for e in entities)


async def store(
    application: Application[Any, Any, Any, Any, Any, Any],
    updates: list[Update],
    finish: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Handle updates in order; returns how many, from the first, are stored (it stops at
    the first one a database failure left unstored). Once all are stored, `finish` runs:
    in the last batch's transaction when the last update was batched, else after it."""
    done = 0
    while done < len(updates):
        run = 0
        while done + run < len(updates) and only_records(updates[done + run]):
            run += 1
        last = done + run == len(updates)
        if run > 1 and await _in_one_transaction(
            application, updates[done : done + run], finish if last else None
        ):
            done += run
            if last:
                return done
            continue
        # alone: a command, a run of one, or the updates of a batch that failed
        for update in updates[done : done + max(run, 1)]:
            if not await handled(application, update):
                return done
            done += 1
    if finish is not None:
        with contextlib.suppress(*DB_ERRORS):  # not saved: a replay is stored once anyway
            await finish()
    return done


MAX_BATCH = 500  # updates per transaction at most


class GroupCommit:
    """Updates of webhook requests that arrive together are stored in one batch; each
    request learns whether its own update was stored. Nothing waits for company: a batch
    is whatever arrived while the previous one was being written."""

    def __init__(self, application: Application[Any, Any, Any, Any, Any, Any]) -> None:
        self.application = application
        self.waiting: list[tuple[Update, asyncio.Future[bool]]] = []
        self.worker: asyncio.Task[None] | None = None
        self.down = False

    async def submit(self, update: Update) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.waiting.append((update, future))
        if self.worker is None or self.worker.done():
            self.worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self.waiting:
            items, self.waiting = self.waiting[:MAX_BATCH], self.waiting[MAX_BATCH:]
            try:
                done = await store(self.application, [u for u, _ in items])
            except Exception as exc:  # never leave a request hanging
                log.error("storing %d webhook updates failed: %s", len(items), type(exc).__name__)
                done = 0
            for i, (_, future) in enumerate(items):
                if not future.done():
                    future.set_result(i < done)
            if done < len(items) and not self.down:
                log.warning(
                    "database unavailable: webhook updates refused (503), "
                    "Telegram sends them again"
                )
                self.down = True
            elif done == len(items) and self.down:
                log.warning("database available again: webhook updates stored")
                self.down = False


class _BatchFailed(Exception):
    pass


async def _in_one_transaction(
    application: Application[Any, Any, Any, Any, Any, Any],
    updates: list[Update],
    finish: Callable[[], Awaitable[None]] | None,
) -> bool:
    repo: Repo = application.bot_data["repo"]
    failed: set[int] = application.bot_data.setdefault("db_failed_updates", set())
    try:
        async with repo.batch():
            for update in updates:
                failed.discard(update.update_id)
                await application.process_update(update)
                if update.update_id in failed:
                    raise _BatchFailed
            if finish is not None:
                await finish()
    except Exception as exc:
        # rolled back: what memory says was written may not be; the updates go one by one
        if not isinstance(exc, (_BatchFailed, *DB_ERRORS)):
            log.error(
                "a batch of %d updates failed (%s): storing them one by one",
                len(updates),
                type(exc).__name__,
            )
        forget_cached(application)
        return False
    return True


def forget_cached(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Forget what handlers remember of stored rows, after a rollback (Repo.batch forgets
    its own)."""
    for key in ("tracked_chats", "host_cache", "linked"):
        application.bot_data.pop(key, None)


async def poll_committed(
    application: Application[Any, Any, Any, Any, Any, Any], stop: asyncio.Event, poll_s: int = 10
) -> None:
    repo: Repo = application.bot_data["repo"]
    offset = await _retry(lambda: repo.get_state(OFFSET_KEY), stop)
    backoff = 0.5
    down = refused = False
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
        except TelegramError as exc:  # e.g. Conflict: another process polls with this token
            if not refused:
                log.warning(
                    "Telegram refused getUpdates (%s): retrying with back-off; is another "
                    "process polling with this token, or a webhook set?",
                    type(exc).__name__,
                )
                refused = True
            await _sleep(stop, backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)
            continue
        if refused:
            log.warning("getUpdates answered again: polling resumed")
            refused = False
        backoff = 0.5
        pending = list(updates)
        while pending:
            after = pending[-1].update_id + 1  # past the whole fetch
            # the offset past the fetch is saved with the last batch's rows
            done = await store(application, pending, partial(repo.set_state, OFFSET_KEY, after))
            if done:
                offset = pending[done - 1].update_id + 1
                pending = pending[done:]
                backoff = 0.5
            if not pending:
                break
            if not down:
                log.warning(
                    "database unavailable: update %s and later kept, retrying with back-off "
                    "(nothing new is fetched until they are stored)",
                    pending[0].update_id,
                )
                down = True
            if await _sleep(stop, backoff):
                return  # stopped: the unconfirmed updates come again at the next start
            backoff = min(backoff * 2, MAX_BACKOFF_S)
        if down:
            log.warning("database available again: ingest resumed, nothing lost")
            down = False


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
