"""Long polling that confirms an update to Telegram only after its rows are committed.

python-telegram-bot's Updater confirms (by the next getUpdates offset) what it fetched,
not what was stored: a crash in between loses updates. Here the offset lives in the
database and moves past an update only once its handlers have finished; after `kill -9`
Telegram delivers the unconfirmed updates again, and idempotent storage stores them once.
When the database is unavailable (a transient error: see is_transient) the same update is
retried with back-off, and nothing new is fetched until it is stored. Any other failure is
the update's own (a poison update): it goes on the dead-letter table `failed_updates`, is
confirmed, and ingest goes on. Updates are parsed one by one from the raw getUpdates JSON,
so one that python-telegram-bot cannot parse is dead-lettered too, never logged.

Updates that only record (posts, joins, leaves in groups) are handled in batches: all the
updates of a fetch, or all webhook requests waiting at that moment, in one transaction.
Commands, button presses and the bot's own membership changes talk to Telegram, so each
of them runs alone, after the batch before it is committed.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from telegram import Bot, Update
from telegram.error import NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.ext import Application

from storage.repo import Repo

log = logging.getLogger(__name__)
OFFSET_KEY = "updates_offset"
MAX_BACKOFF_S = 30.0
READ_SLACK_S = 5.0  # a long poll may take this much longer than its timeout to answer
PARSE = "Update.de_json"  # the "handler" of an update that could not be parsed

# the database is unreachable or busy: the same statement can succeed later
NETWORK_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.EHOSTDOWN,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.ENETRESET,
    }
)
# SQLite: busy or locked, and the file unusable for every statement alike (I/O error, disk
# full, cannot open, read-only): holding the queue loses nothing; dead-lettering would
SQLITE_TRANSIENT = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_CANTOPEN",
                    "SQLITE_FULL", "SQLITE_READONLY")  # fmt: skip
SQLITE_TRANSIENT_TEXT = (
    "database is locked",
    "database table is locked",
    "disk i/o error",
    "unable to open database file",
    "database or disk is full",
    "attempt to write a readonly database",
)
# PostgreSQL SQLSTATEs: connection exceptions (08), insufficient resources (53), system
# errors (58), serialization failure, deadlock, lock not available, shutdown and start-up,
# a read-only standby (after a fail-over), completion unknown
PG_TRANSIENT = ("08", "53", "58", "40001", "40P01", "40003", "55P03", "57P01", "57P02",
                "57P03", "25006")  # fmt: skip


def is_transient(exc: BaseException | None) -> bool:
    """True if the error is the database (or the network to it) being unavailable for a
    while: the update is kept and retried. Anything else is the update's own failure.
    Looks through SQLAlchemy's wrapper (`orig`) and explicit causes (`__cause__`), but not
    into a Telegram error: a reply that timed out may have been sent, and a handler run
    again would send it twice."""
    todo, seen = [exc], set()
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen or isinstance(e, TelegramError):
            continue
        seen.add(id(e))
        if _transient_itself(e):
            return True
        todo += [getattr(e, "orig", None), e.__cause__]
    return False


def _transient_itself(e: BaseException) -> bool:
    if isinstance(e, ConnectionError | TimeoutError | socket.gaierror | PoolTimeout):
        return True
    if isinstance(e, DisconnectionError):
        return True
    if isinstance(e, DBAPIError) and e.connection_invalidated:
        return True
    if isinstance(e, OSError) and (
        e.errno in NETWORK_ERRNOS
        # asyncio's create_connection to several addresses: errno None, one text
        or (e.errno is None and "Connect call failed" in str(e))
    ):
        return True
    if isinstance(e, sqlite3.Error):
        name = getattr(e, "sqlite_errorname", None) or ""
        text = str(e).lower()
        return name.startswith(SQLITE_TRANSIENT) or any(t in text for t in SQLITE_TRANSIENT_TEXT)
    sqlstate = getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(PG_TRANSIENT)


def handler_of(exc: BaseException | None) -> str:
    """The innermost of our handler functions the error went through (module.function), from
    its traceback: e.g. `handlers.admin.on_settings`."""
    found = "unknown"
    tb = exc.__traceback__ if exc is not None else None
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        if module.startswith("handlers.") or (found == "unknown" and module.startswith("bot.")):
            found = f"{module}.{tb.tb_frame.f_code.co_qualname}"
        tb = tb.tb_next
    return found


@dataclass(frozen=True, slots=True)
class Failure:
    """An update that failed other than by the database being unavailable."""

    update_id: int
    error: str
    handler: str


def note_failure(
    application: Application[Any, Any, Any, Any, Any, Any],
    update: object,
    error: BaseException | None,
) -> None:
    """Called by the error handler: a transient failure means the update must be retried;
    any other goes on the dead-letter table once the update is done (the first one only)."""
    if not isinstance(update, Update):
        return
    if is_transient(error):
        application.bot_data.setdefault("db_failed_updates", set()).add(update.update_id)
        return
    poisoned: dict[int, Failure] = application.bot_data.setdefault("poisoned_updates", {})
    poisoned.setdefault(
        update.update_id,
        Failure(update.update_id, type(error).__name__ if error else "unknown", handler_of(error)),
    )


async def handled(application: Application[Any, Any, Any, Any, Any, Any], update: Update) -> bool:
    """Run the handlers; False if a transient failure left the update not stored. An update
    that failed otherwise is put on the dead-letter table: it is done too."""
    failed: set[int] = application.bot_data.setdefault("db_failed_updates", set())
    poisoned: dict[int, Failure] = application.bot_data.setdefault("poisoned_updates", {})
    failed.discard(update.update_id)
    poisoned.pop(update.update_id, None)
    await application.process_update(update)
    if update.update_id in failed:
        return False
    failure = poisoned.pop(update.update_id, None)
    return failure is None or await dead_letter(application.bot_data["repo"], [failure])


async def dead_letter(repo: Repo, failures: Sequence[Failure]) -> bool:
    """Put updates on the dead-letter table and log one line each (id, error class and
    handler; never the update). False if the database is unavailable: retry later."""
    try:
        await repo.record_failed_updates(
            [(f.update_id, f.error, f.handler) for f in failures], int(time.time())
        )
    except Exception as exc:
        if is_transient(exc):
            return False
        log.error("dead-letter table not written (%s): skipped anyway", type(exc).__name__)
    for f in failures:
        log.error(
            "update %s failed in %s (%s): put on the dead-letter table failed_updates and "
            "confirmed",
            f.update_id,
            f.handler,
            f.error,
        )
    return True


def parse_update(data: Any, bot: Bot) -> Update | Failure | None:
    """One update from its raw JSON: a Failure if python-telegram-bot cannot parse it (it
    goes on the dead-letter table, the rest go on), None if it has no update id at all."""
    update_id = data.get("update_id") if isinstance(data, dict) else None
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        return None
    try:
        return Update.de_json(data, bot)
    except Exception as exc:
        return Failure(update_id, type(exc).__name__, PARSE)


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
        try:
            await finish()
        except Exception as exc:  # not saved: a replay is stored once anyway
            if not is_transient(exc):
                log.error("update offset not saved: %s", type(exc).__name__)
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
    poisoned: dict[int, Failure] = application.bot_data.setdefault("poisoned_updates", {})
    try:
        async with repo.batch():
            for update in updates:
                failed.discard(update.update_id)
                poisoned.pop(update.update_id, None)
                await application.process_update(update)
                # any failure: roll back (a half-handled update, an aborted PostgreSQL
                # transaction) and go one by one, where a poison update is dead-lettered
                if update.update_id in failed or update.update_id in poisoned:
                    raise _BatchFailed
            if finish is not None:
                await finish()
    except Exception as exc:
        # rolled back: what memory says was written may not be; the updates go one by one
        if not isinstance(exc, _BatchFailed) and not is_transient(exc):
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
            raw = await fetch_updates(application.bot, offset, poll_s)
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
        parsed = [parse_update(data, application.bot) for data in raw]
        pending = [u for u in parsed if isinstance(u, Update)]
        unparsed = [u for u in parsed if isinstance(u, Failure)]
        ids = [u.update_id for u in parsed if u is not None]
        if len(ids) < len(raw):
            log.error("%d updates without an update_id skipped", len(raw) - len(ids))
        if not ids:
            continue
        after = max(ids) + 1  # past the whole fetch
        while True:
            if unparsed and await dead_letter(repo, unparsed):
                unparsed = []
            if not unparsed:
                # the offset past the fetch is saved with the last batch's rows
                save = partial(repo.set_state, OFFSET_KEY, after)
                done = await store(application, pending, save)
                if done:
                    offset = pending[done - 1].update_id + 1
                    pending = pending[done:]
                    backoff = 0.5
                if not pending:
                    offset = after
                    break
            if not down:
                log.warning(
                    "database unavailable: update %s and later kept, retrying with back-off "
                    "(nothing new is fetched until they are stored)",
                    min([u.update_id for u in pending] + [f.update_id for f in unparsed]),
                )
                down = True
            if await _sleep(stop, backoff):
                return  # stopped: the unconfirmed updates come again at the next start
            backoff = min(backoff * 2, MAX_BACKOFF_S)
        if down:
            log.warning("database available again: ingest resumed, nothing lost")
            down = False


async def fetch_updates(bot: Bot, offset: int | None, poll_s: int) -> list[Any]:
    """getUpdates, unparsed: python-telegram-bot's own get_updates parses the whole batch at
    once, and on one update it cannot parse logs the raw batch (message texts) and raises."""
    data = {"offset": offset, "timeout": poll_s, "allowed_updates": list(Update.ALL_TYPES)}
    # Bot._post: do_api_request warns when asked for a method Bot has (getUpdates)
    raw = await bot._post("getUpdates", data, read_timeout=poll_s + READ_SLACK_S)
    return raw if isinstance(raw, list) else []


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
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning(
                "database unavailable (%s), retrying in %.1f s", exc.__class__.__name__, backoff
            )
            if await _sleep(stop, backoff):
                raise
            backoff = min(backoff * 2, MAX_BACKOFF_S)
