"""Statement helpers the storage modules share: time columns, dialect-aware INSERTs,
`IN (...)` chunks, and whole-database row counts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Table, bindparam, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.models import Base

# INSERTs compiled once per engine (its dialect), keyed by table, columns and conflict rule
_COMPILED: WeakKeyDictionary[Dialect, dict[Any, tuple[str, list[str]]]] = WeakKeyDictionary()


def to_ts(dt: datetime) -> int:
    return int(dt.timestamp())


def from_ts(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def insert_for(dialect: str, model: Any) -> Any:
    """INSERT for the dialect, so `.on_conflict_do_nothing()` works on both databases."""
    tbl: Table = model.__table__
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(tbl)


def insert(conn: AsyncConnection, model: Any) -> Any:
    """INSERT for the connection's dialect."""
    return insert_for(conn.dialect.name, model)


async def insert_many(
    conn: AsyncConnection,
    model: Any,
    rows: Sequence[dict[str, Any]],
    update_on_conflict: tuple[str, ...] = (),
) -> None:
    """INSERT … ON CONFLICT DO NOTHING (or DO UPDATE of the columns named, keyed by the
    primary key) as an executemany at the driver, rows as tuples: SQLAlchemy's per-row
    parameter handling costs more than SQLite's insert itself. Compiled once."""
    cache = _COMPILED.setdefault(conn.dialect, {})
    key = (model, tuple(rows[0]), update_on_conflict)
    compiled = cache.get(key)
    if compiled is None:
        stmt = insert(conn, model)
        if update_on_conflict:
            stmt = stmt.on_conflict_do_update(
                index_elements=[c.name for c in model.__table__.primary_key],
                set_={name: stmt.excluded[name] for name in update_on_conflict},
            )
        else:
            stmt = stmt.on_conflict_do_nothing()
        done = stmt.values({name: bindparam(name) for name in rows[0]}).compile(
            dialect=conn.dialect
        )
        compiled = cache[key] = (str(done), list(done.positiontup or ()))
    sql, names = compiled
    await conn.exec_driver_sql(sql, [tuple(row[n] for n in names) for row in rows])


def chunks(ids: Sequence[Any], size: int = 400) -> Iterable[Sequence[Any]]:
    """Id lists of a size any `IN (...)` takes on SQLite and PostgreSQL."""
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


async def counts(conn: AsyncConnection) -> dict[str, int]:
    """Row counts per table (for tests and `opsbot db status`)."""
    out: dict[str, int] = {}
    for table in Base.metadata.sorted_tables:
        n = (await conn.execute(select(func.count()).select_from(table))).scalar_one()
        out[table.name] = n
    return out
