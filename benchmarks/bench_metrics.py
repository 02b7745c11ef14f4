"""Benchmark: 30-day /retention and /active on a big synthetic group, against DuckDB.

    python -m benchmarks.bench_metrics --members 200000 --messages 5000000 --days 90

Builds the group with the synthetic generator (join arrivals, churn curve, host prompts,
replies, questions) as a Telegram Desktop export, imports it (timing the import: messages/s
and peak memory), then times the two computations the commands run, and the same numbers
computed by DuckDB over the same rows (the analytics-engine baseline).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot import metrics, service, synthetic
from bot.config import Config
from bot.importer import import_export
from storage.repo import Repo


def spec_for(members: int, messages: int, days: int) -> synthetic.GroupSpec:
    # about 2/3 of newcomers stay: joins/day so that `members` are present at the end
    joins_per_day = members / days / 0.7
    mean_present = members / 2
    start = datetime.now(UTC).date() - timedelta(days=days)
    return synthetic.GroupSpec(
        seed=11,
        days=days,
        start=start,
        initial_members=0,
        joins_per_day=joins_per_day,
        messages_per_member_day=messages / days / mean_present,
    )


async def timed(fn, repo: Repo, cold: bool, repeats: int = 5) -> float:  # type: ignore[no-untyped-def]
    """Median seconds; cold = nothing derived kept from an earlier call (a new process)."""
    times = []
    for _ in range(repeats):
        if cold:
            repo.memo.clear()
        t = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


async def run(args: argparse.Namespace) -> None:
    work = Path(args.dir or tempfile.mkdtemp(prefix="opsbot-bench-"))
    work.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (a benchmark)
    export, db = work / "result.json", work / "bench.db"
    spec = spec_for(args.members, args.messages, args.days)
    url = args.db or f"sqlite+aiosqlite:///{db}"
    config = Config(storage_url=url)
    chat_id = int(f"-100{spec.chat_id}")
    repo = await Repo.open(url)
    try:
        if not args.reuse:
            t = time.perf_counter()
            n = synthetic.write_export(spec, export)
            print(
                f"generated {n:,} items ({export.stat().st_size / 1e6:,.0f} MB) "
                f"in {time.perf_counter() - t:.1f} s"
            )
            t = time.perf_counter()
            [summary] = await import_export(
                repo, config, export, hosts=[synthetic.HOST_BASE_ID + i for i in range(spec.hosts)]
            )
            took = time.perf_counter() - t
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"imported {summary.messages:,} messages, {summary.joins:,} joins in "
                f"{took:.1f} s = {summary.messages / took:,.0f} messages/s; "
                f"peak RSS {peak:,.0f} MB"
            )
        now = datetime.now(UTC)
        head = metrics.headcount_at(
            (
                await service.load_group(repo, config, chat_id, now.date(), now.date(), now=now)
            ).history,
            now,
        )
        print(f"members now: {head:,}")
        for cold in (True, False):
            ret = await timed(
                lambda: service.retention_rows(repo, config, chat_id, 30, now), repo, cold
            )
            act = await timed(
                lambda: service.active_rows(repo, config, chat_id, 30, now), repo, cold
            )
            label = "cold" if cold else "warm"
            print(
                f"opsbot {label}  /retention 30: {ret * 1000:,.0f} ms   "
                f"/active 30: {act * 1000:,.0f} ms"
            )
        if url.startswith("sqlite"):
            d_ret, d_act = duckdb_baseline(db, chat_id, now, work)
            print(
                f"duckdb  /retention 30: {d_ret * 1000:,.0f} ms   /active 30: "
                f"{d_act * 1000:,.0f} ms"
            )
            print(f"ratio opsbot/duckdb: retention {ret / d_ret:.1f}x, active {act / d_act:.1f}x")
    finally:
        await repo.close()


def duckdb_baseline(db: Path, chat_id: int, now: datetime, work: Path) -> tuple[float, float]:
    """The same 30 days computed by DuckDB over the same rows (loaded from CSV)."""
    import sqlite3

    import duckdb

    src = sqlite3.connect(db)
    for table, cols in (
        ("membership_events", "user_id, kind, ts"),
        ("activity", "user_id, level, ts"),
    ):
        with (work / f"{table}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow([c.strip() for c in cols.split(",")])
            w.writerows(src.execute(f"SELECT {cols} FROM {table} WHERE chat_id = ?", (chat_id,)))
    src.close()
    con = duckdb.connect()
    con.execute(f"CREATE TABLE ev AS SELECT * FROM read_csv_auto('{work}/membership_events.csv')")
    con.execute(f"CREATE TABLE act AS SELECT * FROM read_csv_auto('{work}/activity.csv')")
    tz = "Asia/Shanghai"
    today = now.astimezone(__import__("zoneinfo").ZoneInfo(tz)).date()
    first = today - timedelta(days=29)
    retention_sql = f"""
        WITH j AS (
          SELECT user_id, min(ts) AS t,
                 CAST(timezone('{tz}', to_timestamp(min(ts))) AS DATE) AS d
          FROM ev WHERE kind = 'join'
            AND CAST(timezone('{tz}', to_timestamp(ts)) AS DATE) >= DATE '{first}'
          GROUP BY user_id, CAST(timezone('{tz}', to_timestamp(ts)) AS DATE)),
        c AS (
          SELECT user_id, d, t + 3600 AS c1h,
                 epoch(timezone('{tz}', CAST(d + 1 AS TIMESTAMP))) AS c0,
                 epoch(timezone('{tz}', CAST(d + 2 AS TIMESTAMP))) AS c1 FROM j),
        s AS (
          SELECT c.d,
            (SELECT kind FROM ev WHERE ev.user_id = c.user_id AND ev.ts < c.c1h
             ORDER BY ts DESC LIMIT 1) = 'join' AS r1h, c.c1h <= {now.timestamp()} AS m1h,
            (SELECT kind FROM ev WHERE ev.user_id = c.user_id AND ev.ts < c.c0
             ORDER BY ts DESC LIMIT 1) = 'join' AS r0, c.c0 <= {now.timestamp()} AS m0,
            (SELECT kind FROM ev WHERE ev.user_id = c.user_id AND ev.ts < c.c1
             ORDER BY ts DESC LIMIT 1) = 'join' AS r1, c.c1 <= {now.timestamp()} AS m1
          FROM c)
        SELECT d, count(*), sum((r1h AND m1h)::INT), sum(m1h::INT), sum((r0 AND m0)::INT),
               sum(m0::INT), sum((r1 AND m1)::INT), sum(m1::INT)
        FROM s GROUP BY d ORDER BY d"""
    active_sql = f"""
        SELECT CAST(timezone('{tz}', to_timestamp(ts)) AS DATE) AS d, level,
               count(DISTINCT user_id)
        FROM act WHERE CAST(timezone('{tz}', to_timestamp(ts)) AS DATE) >= DATE '{first}'
        GROUP BY d, level ORDER BY d"""

    def best(sql: str) -> float:
        times = []
        for _ in range(5):
            t = time.perf_counter()
            con.execute(sql).fetchall()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    return best(retention_sql), best(active_sql)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=200_000)
    p.add_argument("--messages", type=int, default=5_000_000)
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--dir", help="working folder (default: a temp dir)")
    p.add_argument("--db", help="database URL (default: SQLite in the working folder)")
    p.add_argument("--reuse", action="store_true", help="skip generating and importing")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
