"""is_transient: only the database being unavailable or busy holds ingest back; any other
error is the update's own (issue 17). Real errors from the drivers where they can be made."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import create_async_engine
from telegram.error import NetworkError, TimedOut

from bot.ingest import is_transient
from storage.repo import Repo


def caught(fn: object) -> BaseException:
    try:
        fn()  # type: ignore[operator]
    except Exception as exc:
        return exc
    raise AssertionError("did not raise")


def test_a_long_zone_name_is_not_the_database() -> None:
    """The issue's wedge: OSError (file name too long) from the zone lookup."""
    error = caught(lambda: ZoneInfo("x" * 300))
    assert isinstance(error, OSError)
    assert not is_transient(error)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ConnectionRefusedError(111, "Connection refused"), True),
        (ConnectionResetError(104, "Connection reset by peer"), True),
        (TimeoutError(), True),
        (socket.gaierror(-2, "Name or service not known"), True),
        (OSError("Multiple exceptions: [Errno 111] Connect call failed ('::1', 5432)"), True),
        (OSError(36, "File name too long"), False),
        (OSError(2, "No such file or directory"), False),
        (PoolTimeout("QueuePool limit of size 5 overflow 10 reached"), True),
        (
            OperationalError("x", None, sqlite3.OperationalError("database is locked")),
            True,
        ),
        (OperationalError("x", None, sqlite3.OperationalError("no such table: t")), False),
        (
            OperationalError("x", None, sqlite3.OperationalError("too many columns in result")),
            False,
        ),
        (OperationalError("x", None, asyncpg.SerializationError("could not serialize")), True),
        (OperationalError("x", None, asyncpg.DeadlockDetectedError("deadlock")), True),
        (DBAPIError("x", None, asyncpg.CannotConnectNowError("starting up")), True),
        (DBAPIError("x", None, asyncpg.AdminShutdownError("terminating")), True),
        (DBAPIError("x", None, asyncpg.StringDataRightTruncationError("too long")), False),
        (DBAPIError("x", None, asyncpg.UniqueViolationError("duplicate")), False),
        (DBAPIError("x", None, Exception("closed"), connection_invalidated=True), True),
        (ValueError("bad"), False),
        (None, False),
    ],
)
def test_classification(error: BaseException | None, transient: bool) -> None:
    assert is_transient(error) is transient


def test_an_explicit_cause_counts_an_implicit_context_does_not() -> None:
    def chained() -> None:
        try:
            raise ConnectionResetError(104, "reset")
        except ConnectionResetError as exc:
            raise RuntimeError("wrapped") from exc

    def while_handling() -> None:
        try:
            raise ConnectionResetError(104, "reset")
        except ConnectionResetError:
            raise ValueError("a bug in the except branch") from None

    assert is_transient(caught(chained))
    assert not is_transient(caught(while_handling))


def test_telegram_errors_are_not_the_database() -> None:
    """A handler's call to Telegram that failed on the network (as PTB raises it, from the
    socket error): its reply may have been sent, so the update is not run again."""

    def reply_timed_out() -> None:
        try:
            raise TimeoutError("The read operation timed out")
        except TimeoutError as exc:
            raise TimedOut("Timed out") from exc

    def reply_refused() -> None:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as exc:
            raise NetworkError("httpx.ConnectError: All connection attempts failed") from exc

    assert not is_transient(caught(reply_timed_out))
    assert not is_transient(caught(reply_refused))


async def test_sqlite_locked_is_transient_a_broken_statement_is_not(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path)
    holder.execute("CREATE TABLE t (v INTEGER PRIMARY KEY)")
    holder.commit()
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", connect_args={"timeout": 0})
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(OperationalError) as locked:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT * FROM t"))
        assert "database is locked" in str(locked.value)
        assert is_transient(locked.value)
        holder.rollback()
        async with engine.connect() as conn:
            with pytest.raises(OperationalError) as missing:
                await conn.execute(text("SELECT * FROM nowhere"))
            assert not is_transient(missing.value)
            await conn.execute(text("INSERT INTO t VALUES (1)"))
            with pytest.raises(IntegrityError) as twice:
                await conn.execute(text("INSERT INTO t VALUES (1)"))
            assert not is_transient(twice.value)
    finally:
        holder.close()
        await engine.dispose()


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_postgres_value_too_long_is_not_transient(db_url: str) -> None:
    """The other wedge of the issue: a value longer than its column (varchar(32))."""
    repo = await Repo.open(db_url)
    try:
        async with repo.engine.connect() as conn:
            with pytest.raises(DBAPIError) as too_long:
                await conn.execute(
                    text("INSERT INTO bot_state (key, value) VALUES (:k, 1)"), {"k": "9" * 100}
                )
        assert not is_transient(too_long.value)
    finally:
        await repo.close()


async def test_postgres_refusing_connections_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    engine = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/test")
    try:
        with pytest.raises(OSError, match="refused|Connect call failed") as refused:
            async with engine.connect():
                pass
        assert is_transient(refused.value)
    finally:
        await engine.dispose()
