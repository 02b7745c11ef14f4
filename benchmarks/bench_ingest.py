"""Benchmark: updates per second through the real path (Bot API JSON -> Update -> handlers ->
committed rows) of an `opsbot run` process, against inserting the same rows with raw
executemany in one transaction; and the peak memory of that process.

    python -m benchmarks.bench_ingest [--days 4] [--groups 1] [--members 200] [--db URL]

The bot runs as its own process (as in production), long-polling a fake Bot API server that
runs in this one; the whole stream is queued before the clock starts. `--db` names a
PostgreSQL server (a scratch database is created on it and dropped after); the default is a
temporary SQLite file.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

from sqlalchemy import delete, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bot import synthetic
from bot.config import normalize_db_url
from storage.models import ActivityRow, HostEventRow, MembershipEventRow, MessageRow, User
from storage.repo import Repo
from tests import tg
from tests.botapi_server import BOT_ID, TOKEN, FakeBotAPI
from tests.test_import_equals_live import as_updates

ROOT = Path(__file__).resolve().parents[1]
TABLES = (User, MembershipEventRow, HostEventRow, MessageRow, ActivityRow)


def stream(args: argparse.Namespace, work: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """The synthetic history of one group as Bot API updates, repeated for each group
    (another chat id each), interleaved as the groups would be in time."""
    spec = synthetic.GroupSpec(
        seed=3,
        days=args.days,
        initial_members=args.members,
        joins_per_day=args.members / 5,
        messages_per_member_day=2.0,
    )
    synthetic.write_export(spec, work / "result.json")
    items = json.loads((work / "result.json").read_text())["messages"]
    one = as_updates(items)
    base = int(f"-100{spec.chat_id}")
    chats = [base - k for k in range(args.groups)]
    out = []
    for update in one:
        for chat in chats:
            out.append(update if chat == base else _rechat(update, base, chat))
    return out, chats


def _rechat(value: Any, old: int, new: int) -> Any:
    if isinstance(value, dict):
        out = {k: _rechat(v, old, new) for k, v in value.items()}
        if out.get("id") == old and "type" in out:
            out["id"] = new
        return out
    if isinstance(value, list):
        return [_rechat(v, old, new) for v in value]
    return copy.copy(value)


async def start_bot(
    config: Path, log: IO[bytes], api: FakeBotAPI, work: Path
) -> tuple[subprocess.Popen[bytes], float]:
    """`opsbot run`, and the seconds until it polls (schema, admins, commands done)."""
    polls = len(api.calls_of("getUpdates"))
    t = time.perf_counter()
    proc = subprocess.Popen(  # noqa: ASYNC220 (started before the clock runs)
        [sys.executable, "-m", "bot.cli", "run", "--config", str(config)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    while len(api.calls_of("getUpdates")) == polls:
        if proc.poll() is not None:
            sys.exit(f"the bot exited: see {work / 'bot.log'}")
        await asyncio.sleep(0.05)
    return proc, time.perf_counter() - t


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@asynccontextmanager
async def scratch_db(server: str | None, sqlite_file: Path) -> AsyncIterator[str]:
    """A database URL for one run: a scratch database on the PostgreSQL `server` (dropped
    after), or a SQLite file."""
    if server is None:
        yield f"sqlite+aiosqlite:///{sqlite_file}"
        return
    name = f"opsbot_bench_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(normalize_db_url(server), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(normalize_db_url(server)).set(database=name).render_as_string(False)
        finally:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


async def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="opsbot-ingest-"))
    updates, chats = stream(args, work)
    async with scratch_db(args.db, work / "live.db") as url:
        await measure(args, work, updates, chats, url)


async def measure(
    args: argparse.Namespace,
    work: Path,
    updates: list[dict[str, Any]],
    chats: list[int],
    url: str,
) -> None:
    api = FakeBotAPI().start()
    hosts = [tg.member(tg.user(synthetic.HOST_BASE_ID + i), "administrator") for i in range(2)]
    for chat in chats:
        api.admins[chat] = [*hosts, tg.member(tg.user(BOT_ID, "opsbot", True), "administrator")]
        api.member_counts[chat] = args.members + 3
    config = work / "config.toml"
    config.write_text(
        f'[telegram]\ntoken = "{TOKEN}"\napi_base_url = "{api.base_url}"\n'
        f'[storage]\nurl = "{url}"\n'
    )
    config.chmod(0o600)
    with (work / "bot.log").open("wb") as log:
        proc, _ = await start_bot(config, log, api, work)
        try:
            # first sight of each group (bot added: admins read, jobs scheduled), timed apart
            t = time.perf_counter()
            api.push(*updates[: len(chats)])
            if not await asyncio.to_thread(api.wait_confirmed, 3600):
                sys.exit("the bot did not confirm every update within an hour")
            first_sight = time.perf_counter() - t
            t, cpu = time.perf_counter(), cpu_s(proc.pid)
            api.push(*updates[len(chats) :])
            if not await asyncio.to_thread(api.wait_confirmed, 3600):
                sys.exit("the bot did not confirm every update within an hour")
            live = time.perf_counter() - t
            busy = (cpu_s(proc.pid) - cpu) / live
            peak = peak_rss_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        # a restart with every group stored: admins re-read before polling starts
        proc, restart = await start_bot(config, log, api, work)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        api.stop()
    n = len(updates) - len(chats)
    print(
        f"{'PostgreSQL' if url.startswith('postgresql') else 'SQLite'}, {len(chats):,} "
        f"group(s), {n:,} updates"
    )
    print(
        f"first sight of the groups (bot added): {first_sight:.2f} s; a restart with them "
        f"stored polls after {restart:.2f} s"
    )
    print(
        f"real path: {live:.2f} s = {n / live:,.0f} updates/s; "
        f"the bot process busy {busy:.0%} of that time, its peak RSS {peak:.0f} MB"
    )

    # the ceiling: the same rows, inserted into the emptied tables in one transaction
    repo = await Repo.open(url)
    tables = {}
    async with repo.engine.begin() as conn:
        for model in TABLES:
            cols = [c for c in model.__table__.columns if c.name != "id"]
            tables[model] = [dict(r) for r in (await conn.execute(select(*cols))).mappings()]
            await conn.execute(delete(model))
    rows = sum(map(len, tables.values()))
    t = time.perf_counter()
    async with repo.engine.begin() as conn:
        for model, batch in tables.items():
            if batch:
                await conn.execute(insert(model), batch)
    ceiling = time.perf_counter() - t
    await repo.close()
    print(
        f"raw executemany of the same {rows:,} rows in one transaction: {ceiling:.2f} s "
        f"= {n / ceiling:,.0f} updates/s; the real path runs at {ceiling / live:.1%} of it"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--days", type=int, default=4)
    p.add_argument("--groups", type=int, default=1)
    p.add_argument("--members", type=int, default=200, help="members per group at the start")
    p.add_argument("--db", help="a PostgreSQL URL (a scratch database is made on its server)")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
