"""Shared fixtures: a clean environment, and a real database (SQLite; PostgreSQL when set)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bot.config import normalize_db_url
from storage.repo import Repo

PG_URL = os.environ.get("OPSBOT_TEST_DATABASE_URL")
DB_KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in ("OPSBOT_TOKEN", "OPSBOT_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    return


async def _admin_execute(sql: str) -> None:
    assert PG_URL is not None
    admin = create_async_engine(normalize_db_url(PG_URL), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(sql))
    await admin.dispose()


async def fresh_pg_database() -> tuple[str, str]:
    """A new, empty database per test on the PostgreSQL server named by the env var."""
    assert PG_URL is not None
    name = f"opsbot_t_{uuid.uuid4().hex[:12]}"
    await _admin_execute(f'CREATE DATABASE "{name}"')
    base = make_url(normalize_db_url(PG_URL))
    return base.set(database=name).render_as_string(hide_password=False), name


async def drop_pg_database(name: str) -> None:
    await _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=DB_KINDS)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database URL: a temp SQLite file, or a fresh schema on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'opsbot.db'}"
        return
    if not PG_URL:
        pytest.skip(
            "PostgreSQL: set OPSBOT_TEST_DATABASE_URL (e.g. postgresql://postgres@127.0.0.1/test)"
        )
    url, name = await fresh_pg_database()
    try:
        yield url
    finally:
        await drop_pg_database(name)


@pytest.fixture
async def repo(db_url: str) -> AsyncIterator[Repo]:
    r = await Repo.open(db_url)
    try:
        yield r
    finally:
        await r.close()
