"""Benchmark: cold `/retention 30`, `/active 30` and `/report` on a big group, against DuckDB.

    python -m benchmarks.bench_metrics [--members 200000] [--messages 5000000] [--days 90]
        [--db postgresql://postgres@127.0.0.1:5432/test] [--repeats 5] [--json]

Generates one group's rows (joins with a churn curve, pre-tracking members leaving,
rejoins, member and host messages, activity marks) with numpy and writes them straight
into the tables, at the schema revision below (later migrations, e.g. ones that derive
tables from these rows, run when the bot's code opens the database). The rows are
deterministic in the parameters and kept: a SQLite file under benchmarks/.cache/, a
PostgreSQL database named by the parameters on the `--db` server, and a DuckDB file with
the same rows (the analytics-engine baseline). Repeated runs reuse them.

Each timed call is a fresh process ("cold": nothing derived is kept from an earlier call)
that writes one join through the bot's own write path, then times the service function the
command calls (bot/service.py), then deletes that one row again, so the rows stay as
generated (not through /forgetme, which invalidates everything derived from any group's
rows: the next call would measure that instead). Before the timed calls, one untimed call
per command lets whatever the code keeps in the database (e.g. daily rollups) be built,
as it is in a running bot. The operating system's file cache is warm after the first call:
cold means a cold process, not a cold disk. DuckDB computes the same numbers in SQL over
the same rows, also in a fresh process per call; the numbers of all three are compared and
a mismatch is printed loudly (exit status 1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import delete

from bot import metrics, service
from bot.app import settle_heap
from bot.config import Config, normalize_db_url
from bot.events import MemberKind, MembershipEvent
from storage import db
from storage.models import MembershipEventRow
from storage.repo import Repo

CACHE = Path(__file__).parent / ".cache"
GEN_VERSION = 1  # bump when the generated rows change: cached files are keyed by it
SCHEMA_REVISION = "0007"  # the rows are written at this revision; later ones run on open
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # fixed, so cached rows stay "recent"
CHAT_ID = -1009876543210
HOSTS = tuple(range(10, 15))  # hosts post prompts; they have no membership events
PRE_BASE, JOIN_BASE = 1_000_000, 2_000_000  # user ids: pre-tracking members, joiners
BENCH_USER_BASE = 9_000_000_000  # the join written before each timed call
COMMANDS = ("retention", "active", "report")
LABELS = {"retention": "/retention 30", "active": "/active 30", "report": "/report"}
SPAN = 30
Array = NDArray[np.int64]


@dataclass(frozen=True)
class Params:
    members: int
    messages: int
    days: int
    seed: int = 11

    @property
    def key(self) -> str:
        return f"m{self.members}_n{self.messages}_d{self.days}_s{self.seed}_v{GEN_VERSION}"


@dataclass
class Rows:
    tracking_start: int
    baseline: int
    users: Array
    ev_user: Array
    ev_join: NDArray[np.bool_]
    ev_ts: Array
    msg_ts: Array
    msg_sender: Array
    msg_host: NDArray[np.bool_]
    msg_question: NDArray[np.bool_]
    msg_reply: Array  # -1: not a reply (message ids are 1..n in time order)
    act_response: NDArray[np.bool_]
    act_msg: Array
    act_user: Array
    act_ts: Array


# ---- generating ----------------------------------------------------------------------


def generate(p: Params) -> Rows:
    """About `members` members at the end, `messages` messages, over `days` days."""
    rng = np.random.default_rng(p.seed)
    end = int(NOW.timestamp()) - 60  # the bench's join comes after every generated row
    start = end - p.days * 86400
    base = p.members // 10  # members found at the start (the baseline head-count)
    pre_ids = PRE_BASE + np.arange(base, dtype=np.int64)
    pre_leaves = rng.random(base) < 0.2
    pre_leave_ts = rng.integers(start + 1, end, base)
    # about 73 % of newcomers are members at the end (30 % leave, a tenth of them rejoin)
    n = max(1, round((p.members - 0.8 * base) / 0.73))
    ids = JOIN_BASE + np.arange(n, dtype=np.int64)
    join_ts = rng.integers(start + 1, end, n)
    # the churn curve: many leave within the hour, some within days, the rest later
    pick = rng.random(n)
    delay = np.where(
        pick < 0.35,
        rng.exponential(1200, n),
        np.where(pick < 0.7, rng.exponential(1.5 * 86400, n), rng.exponential(15 * 86400, n)),
    )
    leave_ts = join_ts + 1 + delay.astype(np.int64)
    leaves = (rng.random(n) < 0.30) & (leave_ts < end)
    rejoin_ts = leave_ts + 1 + rng.exponential(2 * 86400, n).astype(np.int64)
    rejoins = leaves & (rng.random(n) < 0.10) & (rejoin_ts < end)
    ev_user = np.concatenate([pre_ids[pre_leaves], ids, ids[leaves], ids[rejoins]])
    ev_join = np.concatenate(
        [
            np.zeros(int(pre_leaves.sum()), bool),
            np.ones(n, bool),
            np.zeros(int(leaves.sum()), bool),
            np.ones(int(rejoins.sum()), bool),
        ]
    )
    ev_ts = np.concatenate(
        [pre_leave_ts[pre_leaves], join_ts, leave_ts[leaves], rejoin_ts[rejoins]]
    )
    # messages: each member posts while in the group (strictly after joining, before
    # leaving), at a heavy-tailed rate of their own; most members never post
    lo = np.concatenate([np.full(base, start), join_ts + 1, rejoin_ts[rejoins] + 1])
    hi = np.concatenate([np.where(pre_leaves, pre_leave_ts, end), np.where(leaves, leave_ts, end)])
    hi = np.concatenate([hi, np.full(int(rejoins.sum()), end)])
    who = np.concatenate([pre_ids, ids, ids[rejoins]])
    factor = np.where(rng.random(base + n) < 0.55, 0.0, np.minimum(rng.pareto(1.2, base + n), 200))
    length = np.maximum(hi - lo, 0)
    weight = factor[np.concatenate([np.arange(base + n), base + np.flatnonzero(rejoins)])] * length
    counts = rng.poisson(weight / weight.sum() * p.messages * 0.97)
    member_ts = np.repeat(lo, counts) + (
        rng.random(int(counts.sum())) * np.repeat(length, counts)
    ).astype(np.int64)
    hosts = max(0, p.messages - int(counts.sum()))
    ts = np.concatenate([member_ts, rng.integers(start, end, hosts)])
    sender = np.concatenate([np.repeat(who, counts), rng.choice(np.array(HOSTS), hosts)])
    is_host = np.concatenate([np.zeros(len(member_ts), bool), np.ones(hosts, bool)])
    order = np.argsort(ts, kind="stable")
    ts, sender, is_host = ts[order], sender[order], is_host[order]
    total = len(ts)
    msg_ids = np.arange(1, total + 1, dtype=np.int64)
    reply = np.where(rng.random(total) < 0.3, msg_ids - 1, -1)
    # activity marks of member messages (a reply to a prompt, a reply to a member, ...)
    resp = ~is_host & (rng.random(total) < 0.12)
    inter = ~is_host & (rng.random(total) < 0.30)
    return Rows(
        tracking_start=start,
        baseline=base,
        users=np.concatenate([pre_ids, ids, np.array(HOSTS)]),
        ev_user=ev_user,
        ev_join=ev_join,
        ev_ts=ev_ts,
        msg_ts=ts,
        msg_sender=sender,
        msg_host=is_host,
        msg_question=rng.random(total) < 0.06,
        msg_reply=reply,
        act_response=np.concatenate(
            [np.ones(int(resp.sum()), bool), np.zeros(int(inter.sum()), bool)]
        ),
        act_msg=np.concatenate([msg_ids[resp], msg_ids[inter]]),
        act_user=np.concatenate([sender[resp], sender[inter]]),
        act_ts=np.concatenate([ts[resp], ts[inter]]),
    )


CHUNK = 100_000
Table = tuple[str, list[str], Callable[[], Iterator[list[tuple[Any, ...]]]]]


def tables(r: Rows) -> list[Table]:
    """(table, columns, chunks of rows) for every table the group's rows go to."""

    def chats() -> Iterator[list[tuple[Any, ...]]]:
        yield [
            (
                CHAT_ID,
                "Bench group",
                "supergroup",
                r.tracking_start,
                r.baseline,
                "administrator",
                True,
                0,
            )
        ]

    def users() -> Iterator[list[tuple[Any, ...]]]:
        for i in range(0, len(r.users), CHUNK):
            yield [(u, False, f"User {u}") for u in r.users[i : i + CHUNK].tolist()]

    def events() -> Iterator[list[tuple[Any, ...]]]:
        for i in range(0, len(r.ev_ts), CHUNK):
            s = slice(i, i + CHUNK)
            yield [
                (CHAT_ID, u, "join" if j else "leave", t, 0, "import", False)
                for u, j, t in zip(
                    r.ev_user[s].tolist(), r.ev_join[s].tolist(), r.ev_ts[s].tolist(), strict=True
                )
            ]

    def messages() -> Iterator[list[tuple[Any, ...]]]:
        senders = r.msg_sender.tolist()  # reply targets may sit in the chunk before
        for i in range(0, len(r.msg_ts), CHUNK):
            s = slice(i, i + CHUNK)
            yield [
                (
                    CHAT_ID,
                    i + k + 1,
                    t,
                    "host" if h else "member",
                    u,
                    None if rep < 0 else rep,
                    None if rep < 0 else senders[rep - 1],
                    q,
                    False,
                    False,
                )
                for k, (t, h, u, rep, q) in enumerate(
                    zip(
                        r.msg_ts[s].tolist(),
                        r.msg_host[s].tolist(),
                        r.msg_sender[s].tolist(),
                        r.msg_reply[s].tolist(),
                        r.msg_question[s].tolist(),
                        strict=True,
                    )
                )
            ]

    def activity() -> Iterator[list[tuple[Any, ...]]]:
        for i in range(0, len(r.act_ts), CHUNK):
            s = slice(i, i + CHUNK)
            yield [
                (CHAT_ID, "response" if lv else "interaction", m, u, t)
                for lv, m, u, t in zip(
                    r.act_response[s].tolist(),
                    r.act_msg[s].tolist(),
                    r.act_user[s].tolist(),
                    r.act_ts[s].tolist(),
                    strict=True,
                )
            ]

    return [
        (
            "chats",
            [
                "chat_id",
                "title",
                "type",
                "tracking_start_ts",
                "baseline_count",
                "bot_status",
                "bot_is_admin",
                "data_version",
            ],
            chats,
        ),
        ("users", ["user_id", "is_bot", "first_name"], users),
        (
            "membership_events",
            ["chat_id", "user_id", "kind", "ts", "seq", "source", "via_join_request"],
            events,
        ),
        (
            "messages",
            [
                "chat_id",
                "message_id",
                "ts",
                "role",
                "sender_id",
                "reply_to_message_id",
                "reply_to_sender_id",
                "is_question",
                "is_response",
                "is_discussion",
            ],
            messages,
        ),
        ("activity", ["chat_id", "level", "message_id", "user_id", "ts"], activity),
    ]


async def create_schema(url: str, revision: str = SCHEMA_REVISION) -> None:
    engine = db.make_engine(url)
    try:
        await db.upgrade(engine, revision)
    finally:
        await engine.dispose()


def schema_head() -> str:
    """The newest schema revision of this code."""
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head() or SCHEMA_REVISION


def upgraded(url: str) -> None:
    """Run this code's later migrations on a copy of the generated rows (timed: a migration
    may derive tables from them)."""
    t = time.perf_counter()
    asyncio.run(create_schema(url, "head"))
    note(f"upgraded the copy to {schema_head()} in {time.perf_counter() - t:.0f} s")


def ensure_sqlite(p: Params, rows: Callable[[], Rows]) -> str:
    path = CACHE / f"metrics_{p.key}.db"
    if not path.exists():
        t = time.perf_counter()
        r = rows()
        tmp = path.with_suffix(".tmp")
        for stale in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            stale.unlink(missing_ok=True)
        asyncio.run(create_schema(f"sqlite+aiosqlite:///{tmp}"))
        con = sqlite3.connect(tmp)
        con.execute("PRAGMA synchronous=OFF")
        with con:
            for table, cols, chunks in tables(r):
                marks = ", ".join("?" * len(cols))
                sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})"
                for chunk in chunks():
                    con.executemany(sql, chunk)
        con.close()
        tmp.rename(path)
        note(f"wrote {path} in {time.perf_counter() - t:.0f} s")
    head = schema_head()
    if head == SCHEMA_REVISION:
        return f"sqlite+aiosqlite:///{path}"
    # the generated file stays at its revision; each later schema gets a copy of its own
    copy = CACHE / f"metrics_{p.key}_at_{head}.db"
    if not copy.exists():
        tmp = copy.with_suffix(".tmp")
        shutil.copyfile(path, tmp)
        upgraded(f"sqlite+aiosqlite:///{tmp}")
        tmp.rename(copy)
    return f"sqlite+aiosqlite:///{copy}"


def pg_urls(server: str, p: Params) -> tuple[str, str, str]:
    """(SQLAlchemy URL, asyncpg DSN of the server's own database, database name)."""
    from sqlalchemy.engine import make_url

    url = make_url(normalize_db_url(server, "--db"))
    name = f"opsbot_bench_{p.key}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return url.set(database=name).render_as_string(hide_password=False), admin, name


async def ensure_pg(server: str, p: Params, rows: Callable[[], Rows]) -> str:
    import asyncpg
    from sqlalchemy.engine import make_url

    url, admin, name = pg_urls(server, p)
    con = await asyncpg.connect(admin)
    try:
        if not await con.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await load_pg(con, url, name, rows)
        head = schema_head()
        if head == SCHEMA_REVISION:
            return url
        # the generated database stays at its revision; each later schema gets a copy
        copy = f"{name}_at_{head}"
        if not await con.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", copy):
            await con.execute(f'DROP DATABASE IF EXISTS "{copy}_tmp"')
            await con.execute(f'CREATE DATABASE "{copy}_tmp" TEMPLATE "{name}"')
            tmp_url = make_url(url).set(database=f"{copy}_tmp")
            await asyncio.to_thread(upgraded, tmp_url.render_as_string(hide_password=False))
            await con.execute(f'ALTER DATABASE "{copy}_tmp" RENAME TO "{copy}"')
        return make_url(url).set(database=copy).render_as_string(hide_password=False)
    finally:
        await con.close()


async def load_pg(con: Any, url: str, name: str, rows: Callable[[], Rows]) -> None:
    """Write the generated rows to a new database `name` (under a temporary name until done)."""
    import asyncpg
    from sqlalchemy.engine import make_url

    t = time.perf_counter()
    tmp = f"{name}_tmp"
    await con.execute(f'DROP DATABASE IF EXISTS "{tmp}"')
    await con.execute(f'CREATE DATABASE "{tmp}"')
    tmp_url = make_url(url).set(database=tmp)
    await create_schema(tmp_url.render_as_string(hide_password=False))
    r = rows()
    dest = await asyncpg.connect(
        tmp_url.set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        for table, cols, chunks in tables(r):
            for chunk in chunks():
                await dest.copy_records_to_table(table, records=chunk, columns=cols)
        await dest.execute("VACUUM ANALYZE")  # what autovacuum does soon after a load
    finally:
        await dest.close()
    await con.execute(f'ALTER DATABASE "{tmp}" RENAME TO "{name}"')
    note(f"wrote PostgreSQL database {name} in {time.perf_counter() - t:.0f} s")


def ensure_duckdb(p: Params, rows: Callable[[], Rows]) -> Path:
    import duckdb

    path = CACHE / f"metrics_{p.key}.duckdb"
    if not path.exists():
        t = time.perf_counter()
        r = rows()
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        con = duckdb.connect(str(tmp))
        con.register(
            "ev_arrays",
            {"user_id": r.ev_user, "kind": np.where(r.ev_join, "join", "leave"), "ts": r.ev_ts},
        )
        con.register(
            "act_arrays",
            {
                "user_id": r.act_user,
                "level": np.where(r.act_response, "response", "interaction"),
                "ts": r.act_ts,
            },
        )
        con.execute("CREATE TABLE ev AS SELECT * FROM ev_arrays")
        con.execute("CREATE TABLE act AS SELECT * FROM act_arrays")
        con.execute(
            "CREATE TABLE chat AS SELECT ? AS tracking_start, ? AS baseline",
            [r.tracking_start, r.baseline],
        )
        con.close()
        tmp.rename(path)
        note(f"wrote {path} in {time.perf_counter() - t:.0f} s")
    return path


# ---- opsbot's numbers (what the commands call) -----------------------------------------


def canon_retention(rows: list[dict[str, Any]]) -> list[Any]:
    return [
        [
            row["day"],
            row["joins"],
            {w: [c["retained"], c["matured"], c["pending"]] for w, c in row["cells"].items()},
        ]
        for row in rows
    ]


def report_day(config: Config) -> date:
    return metrics.local_day(NOW, config.for_chat(CHAT_ID).tz) - timedelta(days=1)


async def opsbot_numbers(repo: Repo, config: Config, command: str) -> Any:
    if command == "retention":
        rows, _ = await service.retention_rows(repo, config, CHAT_ID, SPAN, NOW)
        return canon_retention(rows)
    if command == "active":
        act = await service.active_rows(repo, config, CHAT_ID, SPAN, NOW)
        return [
            [r["day"], r["audience"], r["response"]["users"], r["interaction"]["users"]]  # type: ignore[index]
            for r in act
        ]
    result = await service.digest(repo, config, CHAT_ID, report_day(config), NOW)
    rep: dict[str, Any] = result.report
    return {
        "date": rep["date"],
        "joins": rep["joins"],
        "leaves": rep["leaves"],
        "headcount_end": rep["headcount_end"],
        "net": result.net,
        "retention": {
            w: [c["cohort"], c["retained"], c["matured"], c["pending"]]
            for w, c in rep["retention"].items()
        },
        "audience": rep["active"]["audience"],
        "response": rep["active"]["response"]["users"],
        "interaction": rep["active"]["interaction"]["users"],
    }


async def opsbot_call(url: str, command: str, join: bool) -> tuple[float, Any]:
    """One cold call: a join through the bot's write path, then the timed service call."""
    repo = await Repo.open(url)
    config = Config(storage_url=url)
    settle_heap()  # as the bot does once started
    user = BENCH_USER_BASE + time.time_ns() // 1000 % 10**9 if join else None
    try:
        if user is not None:
            await repo.record_membership(
                MembershipEvent(CHAT_ID, user, MemberKind.JOIN, NOW - timedelta(seconds=1))
            )
        t = time.perf_counter()
        numbers = await opsbot_numbers(repo, config, command)
        took = time.perf_counter() - t
    finally:
        if user is not None:  # only today's numbers saw it: nothing kept for earlier days did
            async with repo.engine.begin() as conn:
                await conn.execute(
                    delete(MembershipEventRow).where(MembershipEventRow.user_id == user)
                )
        await repo.close()
    return took, numbers


# ---- the same numbers in DuckDB ----------------------------------------------------------

EFFECTIVE = """eff AS (
  SELECT user_id, kind, ts, CASE kind WHEN 'join' THEN 1 ELSE -1 END AS dd FROM (
    SELECT *, lag(kind) OVER (PARTITION BY user_id ORDER BY ts) AS prev FROM ev)
  WHERE prev IS NULL OR prev <> kind)"""  # joins and leaves that change a person's state


def days_cte(days: Sequence[date], windows: Sequence[metrics.Window], tz: Any) -> str:
    """days(d, lo, hi, cp_<window>...) with the dayN checkpoints, computed like opsbot's."""
    rows = []
    for d in days:
        lo, hi = (int(x.timestamp()) for x in metrics.local_day_bounds(d, tz))
        cps = [
            str(int(metrics.local_day_bounds(d + timedelta(days=w.days), tz)[1].timestamp()))
            for w in windows
            if w.days is not None
        ]
        rows.append(f"(DATE '{d}', {lo}, {hi}{''.join(', ' + c for c in cps)})")
    names = ["d", "lo", "hi"] + [f"cp_{w.name}" for w in windows if w.days is not None]
    return f"days({', '.join(names)}) AS (VALUES {', '.join(rows)})"


def duck_retention(
    con: Any, days: Sequence[date], config: Config
) -> dict[str, dict[str, list[int]]]:
    """{day: {window: [retained, matured, pending]}} of the cohorts of `days`."""
    settings = config.for_chat(CHAT_ID)
    windows = [metrics.parse_window(w) for w in settings.windows]
    now = int(NOW.timestamp())
    checkpoints = " UNION ALL ".join(
        f"SELECT d, user_id, '{w.name}' AS w, "
        + (f"ts + {w.hours * 3600}" if w.hours is not None else f"cp_{w.name}")
        + " AS cp FROM coh"
        for w in windows
    )
    sql = f"""
        WITH {days_cte(days, windows, settings.tz)}, {EFFECTIVE},
        coh AS (
          SELECT days.*, e.user_id, min(e.ts) AS ts
          FROM eff e JOIN days ON e.ts >= days.lo AND e.ts < days.hi
          WHERE e.kind = 'join' GROUP BY ALL),
        cps AS ({checkpoints}),
        st AS (SELECT c.d, c.w, c.cp, e.kind FROM cps c
               ASOF JOIN ev e ON c.user_id = e.user_id AND c.cp > e.ts)
        SELECT d, w, count(*) FILTER (cp <= {now} AND kind = 'join'),
               count(*) FILTER (cp <= {now}), count(*) FILTER (cp > {now})
        FROM st GROUP BY d, w"""
    out = {d.isoformat(): {w.name: [0, 0, 0] for w in windows} for d in days}
    for d, w, retained, matured, pending in con.execute(sql).fetchall():
        out[d.isoformat()][w] = [retained, matured, pending]
    return out


def tracking_day(con: Any, config: Config) -> date:
    start = con.execute("SELECT tracking_start FROM chat").fetchone()[0]
    return metrics.local_day(datetime.fromtimestamp(start, UTC), config.for_chat(CHAT_ID).tz)


def duck_audience(con: Any, days: Sequence[date], config: Config) -> dict[str, int | None]:
    """Members at the start of each day plus those who became members during it."""
    tz = config.for_chat(CHAT_ID).tz
    sql = f"""
        WITH {days_cte(days, [], tz)}, {EFFECTIVE},
        per_day AS (
          SELECT days.d, e.user_id, sum(e.dd) AS net, arg_min(e.dd, e.ts) AS first
          FROM eff e JOIN days ON e.ts >= days.lo AND e.ts < days.hi GROUP BY ALL),
        daily AS (
          SELECT days.d, coalesce(sum(p.net), 0) AS net,
                 count(p.user_id) FILTER (p.first > 0) AS became
          FROM days LEFT JOIN per_day p USING (d) GROUP BY days.d)
        SELECT d, (SELECT baseline FROM chat)
                  + (SELECT coalesce(sum(dd), 0) FROM eff WHERE ts < (SELECT min(lo) FROM days))
                  + coalesce(sum(net) OVER (ORDER BY d ROWS BETWEEN UNBOUNDED PRECEDING
                                                        AND 1 PRECEDING), 0)
                  + became
        FROM daily"""
    first = tracking_day(con, config)
    return {d.isoformat(): (n if d >= first else None) for d, n in con.execute(sql).fetchall()}


def duck_active(con: Any, days: Sequence[date], config: Config) -> dict[tuple[str, str], int]:
    sql = f"""
        WITH {days_cte(days, [], config.for_chat(CHAT_ID).tz)}
        SELECT days.d, act.level, count(DISTINCT act.user_id)
        FROM act JOIN days ON act.ts >= days.lo AND act.ts < days.hi GROUP BY ALL"""
    return {(d.isoformat(), level): n for d, level, n in con.execute(sql).fetchall()}


def span_days(config: Config) -> list[date]:
    last = metrics.local_day(NOW, config.for_chat(CHAT_ID).tz)
    return [last - timedelta(days=i) for i in range(SPAN - 1, -1, -1)]


def duck_numbers(con: Any, command: str) -> Any:
    config = Config()
    tz = config.for_chat(CHAT_ID).tz
    if command == "retention":
        span = span_days(config)
        cells = duck_retention(con, span, config)
        return [
            [
                d.isoformat(),
                sum(cells[d.isoformat()][config.for_chat(CHAT_ID).windows[0]][1:]),
                cells[d.isoformat()],
            ]
            for d in span
        ]
    if command == "active":
        span = span_days(config)
        audience = duck_audience(con, span, config)
        active = duck_active(con, span, config)
        return [
            [
                d.isoformat(),
                audience[d.isoformat()],
                active.get((d.isoformat(), "response"), 0),
                active.get((d.isoformat(), "interaction"), 0),
            ]
            for d in span
        ]
    day = report_day(config)
    windows = {w: metrics.parse_window(w) for w in config.for_chat(CHAT_ID).windows}
    cohorts = {w: metrics.report_cohort_day(day, win) for w, win in windows.items()}
    cells = duck_retention(con, sorted(set(cohorts.values())), config)
    lo, hi = (int(x.timestamp()) for x in metrics.local_day_bounds(day, tz))
    before = int(metrics.local_day_bounds(day - timedelta(days=1), tz)[1].timestamp())
    joins, leaves, end, end_before = con.execute(
        f"""WITH {EFFECTIVE}
        SELECT count(DISTINCT user_id) FILTER (kind = 'join' AND ts >= {lo} AND ts < {hi}),
               count(*) FILTER (kind = 'leave' AND ts >= {lo} AND ts < {hi}),
               (SELECT baseline FROM chat) + sum(dd) FILTER (ts < {min(hi, int(NOW.timestamp()))}),
               (SELECT baseline FROM chat) + sum(dd) FILTER (ts < {before})
        FROM eff"""
    ).fetchone()
    day_audience = duck_audience(con, [day], config)[day.isoformat()]
    day_active = duck_active(con, [day], config)
    return {
        "date": day.isoformat(),
        "joins": joins,
        "leaves": leaves,
        "headcount_end": end,
        "net": end - end_before,
        "retention": {w: [c.isoformat(), *cells[c.isoformat()][w]] for w, c in cohorts.items()},
        "audience": day_audience,
        "response": day_active.get((day.isoformat(), "response"), 0),
        "interaction": day_active.get((day.isoformat(), "interaction"), 0),
    }


def duck_call(path: str, command: str) -> tuple[float, Any]:
    import duckdb

    con = duckdb.connect(path, read_only=True)
    try:
        t = time.perf_counter()
        numbers = duck_numbers(con, command)
        return time.perf_counter() - t, numbers
    finally:
        con.close()


# ---- running ---------------------------------------------------------------------------


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def child(engine: str, target: str, command: str, join: bool = True) -> tuple[float, Any]:
    """One call in a fresh process."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.bench_metrics",
        "--child",
        command,
        "--engine",
        engine,
    ]
    cmd += ["--target", target] + ([] if join else ["--no-join"])
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(cmd[2:])} failed:\n{done.stderr}")
    out = done.stdout
    result = json.loads(out.splitlines()[-1])
    return result["seconds"], result["numbers"]


def mismatches(expected: Any, got: Any, where: str = "") -> list[str]:
    if isinstance(expected, dict) and isinstance(got, dict):
        out = []
        for k in sorted(set(expected) | set(got), key=str):
            out += mismatches(expected.get(k), got.get(k), f"{where}.{k}")
        return out
    if isinstance(expected, list) and isinstance(got, list) and len(expected) == len(got):
        out = []
        for i, (a, b) in enumerate(zip(expected, got, strict=True)):
            out += mismatches(a, b, f"{where}[{a[0] if isinstance(a, list) and a else i}]")
        return out
    return [] if expected == got else [f"{where or '.'}: DuckDB {expected!r}, opsbot {got!r}"]


def fmt_ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:,.0f} ms"


def run(args: argparse.Namespace) -> int:
    p = Params(args.members, args.messages, args.days)
    CACHE.mkdir(exist_ok=True)
    made: list[Rows] = []

    def rows() -> Rows:
        if not made:
            t = time.perf_counter()
            made.append(generate(p))
            r = made[0]
            note(
                f"generated {len(r.ev_ts):,} joins/leaves, {len(r.msg_ts):,} messages, "
                f"{len(r.act_ts):,} activity marks in {time.perf_counter() - t:.1f} s"
            )
        return made[0]

    backends: dict[str, tuple[str, str]] = {}  # label -> (engine, target)
    if not args.no_sqlite:
        backends["SQLite"] = ("opsbot", ensure_sqlite(p, rows))
    if args.db:
        backends["PostgreSQL"] = ("opsbot", asyncio.run(ensure_pg(args.db, p, rows)))
    backends["DuckDB"] = ("duckdb", str(ensure_duckdb(p, rows)))
    made.clear()
    medians: dict[str, dict[str, float]] = {c: {} for c in args.commands}
    checks: dict[str, dict[str, str]] = {}
    problems: list[str] = []
    for label, (engine, target) in backends.items():
        for command in args.commands:
            child(engine, target, command)  # what the code keeps for later calls is built
            times = []
            for _ in range(args.repeats):
                took, numbers = child(engine, target, command)
                times.append(took)
            medians[command][label] = statistics.median(times)
            note(f"{label:<10} {LABELS[command]:<14} {fmt_ms(medians[command][label])}")
    # the numbers: DuckDB's against each opsbot database's, with no bench join written
    for label, (engine, target) in backends.items():
        if engine == "duckdb":
            continue
        checks[label] = {}
        for command in args.commands:
            _, expected = child("duckdb", backends["DuckDB"][1], command)
            _, got = child(engine, target, command, join=False)
            found = mismatches(expected, got)
            checks[label][command] = "equal" if not found else f"{len(found)} MISMATCHES"
            problems += [f"{label} {LABELS[command]} {m}" for m in found]
    load = os.getloadavg()
    result: dict[str, Any] = {
        "params": asdict(p),
        "now": NOW.isoformat(),
        "load_average": [round(x, 2) for x in load],
        "repeats": args.repeats,
        "medians_ms": {
            c: {b: round(s * 1000, 1) for b, s in m.items()} for c, m in medians.items()
        },
        "ratio_to_duckdb": {
            c: {b: round(s / m["DuckDB"], 1) for b, s in m.items() if b != "DuckDB"}
            for c, m in medians.items()
        },
        "numbers_vs_duckdb": checks,
    }
    if args.against:
        before = json.loads(Path(args.against).read_text())["medians_ms"]
        result["ratio_to_before"] = {
            c: {b: round(ms / before[c][b], 3) for b, ms in m.items() if b in before.get(c, {})}
            for c, m in result["medians_ms"].items()
        }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result, list(backends))
    for line in problems[:40]:
        print(f"MISMATCH {line}", file=sys.stderr)
    if problems:
        print(f"!!! {len(problems)} numbers differ between opsbot and DuckDB !!!", file=sys.stderr)
    return 1 if problems else 0


def print_table(result: dict[str, Any], labels: list[str]) -> None:
    p = result["params"]
    print(
        f"{p['members']:,} members, {p['messages']:,} messages, {p['days']} days; cold medians "
        f"of {result['repeats']} fresh processes; load average "
        + " ".join(str(x) for x in result["load_average"])
    )
    others = [b for b in labels if b != "DuckDB"]
    head = ["command", *labels, *(f"{b}/DuckDB" for b in others)]
    if "ratio_to_before" in result:
        head += [f"{b}/before" for b in others]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for c, m in result["medians_ms"].items():
        cells = [LABELS[c], *(f"{m[b]:,.0f} ms" for b in labels)]
        cells += [f"{result['ratio_to_duckdb'][c][b]:,.1f}x" for b in others]
        if "ratio_to_before" in result:
            cells += [f"{result['ratio_to_before'][c].get(b, float('nan')):.3f}x" for b in others]
        print("| " + " | ".join(cells) + " |")
    for backend, per in result["numbers_vs_duckdb"].items():
        print(
            f"numbers, {backend} against DuckDB: "
            + ", ".join(f"{LABELS[c]} {v}" for c, v in per.items())
        )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--members", type=int, default=200_000)
    ap.add_argument("--messages", type=int, default=5_000_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument(
        "--db", help="a PostgreSQL server URL: the rows go to a database of their own on it"
    )
    ap.add_argument("--no-sqlite", action="store_true", help="PostgreSQL and DuckDB only")
    ap.add_argument("--repeats", type=int, default=5, help="fresh processes per figure (median)")
    ap.add_argument("--commands", nargs="+", choices=COMMANDS, default=list(COMMANDS))
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap.add_argument(
        "--against", metavar="JSON", help="an earlier --json output: ratios against it"
    )
    ap.add_argument("--child", choices=COMMANDS, help=argparse.SUPPRESS)
    ap.add_argument("--engine", choices=("opsbot", "duckdb"), help=argparse.SUPPRESS)
    ap.add_argument("--target", help=argparse.SUPPRESS)
    ap.add_argument("--no-join", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        if args.engine == "duckdb":
            took, numbers = duck_call(args.target, args.child)
        else:
            took, numbers = asyncio.run(opsbot_call(args.target, args.child, not args.no_join))
        print(json.dumps({"seconds": took, "numbers": numbers}))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
