"""Engines and schema upgrades for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    # no JIT compilation: the bot's statements are short, and a plan whose estimate is high
    # (a loop over many groups' rows) would spend far longer compiling than running
    return create_async_engine(
        url,
        pool_size=5,
        max_overflow=5,
        pool_pre_ping=True,
        connect_args={"server_settings": {"jit": "off"}},
    )


def _alembic_config(connection: Connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Create or upgrade the schema with Alembic on the engine's own connection."""

    def _run(connection: Connection) -> None:
        command.upgrade(_alembic_config(connection), revision)

    async with engine.begin() as conn:
        await conn.run_sync(_run)


async def current_revision(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    def _rev(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(_rev)


class StorageError(Exception):
    """The database at `[storage] url` cannot be used. The message is one line: what is
    wrong and what to do; it never contains the URL's password."""

    exit_code = 2


class NoDatabase(StorageError):
    """A command that only reads found no opsbot database at `[storage] url`."""

    exit_code = 1


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for PostgreSQL and for in-memory databases)."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return None
    if not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _server(url: str) -> str:
    parsed = make_url(url)
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}"


def explain(url: str, exc: BaseException) -> str | None:
    """One line for a failure to open the database at `url`; None if not recognised."""
    key = "[storage] url"
    if isinstance(exc, ModuleNotFoundError) and exc.name in ("asyncpg", "aiosqlite"):
        if exc.name == "asyncpg":
            return (
                f"{key} names a PostgreSQL database, but its driver (asyncpg) is not "
                "installed: pip install 'opsbot[postgres]'"
            )
        return f"{key}: the SQLite driver (aiosqlite) is not installed: pip install opsbot"
    path = sqlite_path(url)
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    detail = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    if path is not None:
        if "unable to open database file" in detail:
            return (
                f"{key}: cannot open the SQLite file {path}: check that the folder "
                f"{path.parent} exists and that opsbot may write there"
            )
        if "file is not a database" in detail:
            return (
                f"{key}: {path} is not a SQLite database: point {key} at opsbot's "
                "database file, or move that file away"
            )
        if isinstance(exc, DBAPIError | OSError | sqlite3.Error):
            return f"{key}: cannot use the SQLite file {path}: {detail}"
        return None
    server, name = _server(url), make_url(url).database or ""
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate == "3D000":
        return (
            f"{key}: database {name!r} does not exist on the PostgreSQL server at {server}: "
            f"create it (createdb {name}; see the README), or fix {key}"
        )
    if sqlstate in ("28000", "28P01"):
        return (
            f"{key}: the PostgreSQL server at {server} refused the login ({detail}): "
            f"create the role or fix the user and password in {key} (see the README)"
        )
    if isinstance(exc, OSError):  # refused, unknown host, timeout
        reason = (
            "connection refused"
            if isinstance(exc, ConnectionRefusedError)
            else "timed out"
            if isinstance(exc, TimeoutError)
            else exc.strerror or type(exc).__name__
        )
        return (
            f"{key}: cannot connect to PostgreSQL at {server} ({reason}): start the "
            f"server, or fix the host and port in {key}"
        )
    if isinstance(exc, DBAPIError):
        return f"{key}: cannot use the PostgreSQL database {name!r} at {server}: {detail}"
    return None


async def open_engine(url: str, *, create: bool, upgrade_schema: bool = True) -> AsyncEngine:
    """An engine on an opsbot database, its schema upgraded; StorageError in one line
    when it cannot be used. Without `create`, a missing database is NoDatabase: only
    the commands that write (run, import, demo, db upgrade) create one."""
    path = sqlite_path(url)
    if path is not None:
        if not path.parent.is_dir():
            raise StorageError(
                f"[storage] url: the folder {path.parent} does not exist: create it, "
                "or check the folder in [storage] url"
            )
        if not create and not path.exists():
            raise NoDatabase(
                f"[storage] url: there is no database at {path}: check [storage] url, "
                "or create one with opsbot import FILE, opsbot run or opsbot db upgrade"
            )
        _check_sqlite(url, path, create)
    try:
        engine = make_engine(url)
    except ModuleNotFoundError as exc:
        raise StorageError(explain(url, exc) or str(exc)) from exc
    try:
        revision = await current_revision(engine)
        if revision is None and not create:
            where = path if path is not None else f"{make_url(url).database!r} at {_server(url)}"
            raise NoDatabase(
                f"[storage] url: there is no opsbot database at {where} (no tables): "
                "check [storage] url, or create them with opsbot db upgrade"
            )
        if upgrade_schema:
            await upgrade(engine)
    except StorageError:
        await engine.dispose()
        raise
    except Exception as exc:
        await engine.dispose()
        message = explain(url, exc)
        if message is None:
            raise
        raise StorageError(message) from exc
    return engine


def _check_sqlite(url: str, path: Path, create: bool) -> None:
    """Open the file once with the plain sqlite3 module: a file that cannot be opened
    or is no database fails here, in this thread. (aiosqlite's worker thread, when its
    connect fails, can outlive the event loop and print a traceback.)"""
    mode = "rwc" if create else "rw"
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode={mode}", uri=True)
        try:
            conn.execute("PRAGMA schema_version")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StorageError(explain(url, exc) or f"[storage] url: {path}: {exc}") from exc
