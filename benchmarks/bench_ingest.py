"""Benchmark: updates per second through the real path (Bot API JSON -> Update -> handlers ->
committed rows), against inserting the same rows with raw executemany in one transaction.

    python -m benchmarks.bench_ingest [--days 4] [--db URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert, select

from bot import synthetic
from bot.app import build_application, running
from bot.config import Config
from storage.models import ActivityRow, MembershipEventRow, MessageRow
from storage.repo import Repo
from tests import tg
from tests.botapi_server import BOT_ID, TOKEN, FakeBotAPI
from tests.test_import_equals_live import CHAT_ID, HOSTS, as_updates


async def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="opsbot-ingest-"))
    spec = synthetic.GroupSpec(seed=3, days=args.days, initial_members=200, joins_per_day=40,
                               messages_per_member_day=2.0)
    synthetic.write_export(spec, work / "result.json")
    items = json.loads((work / "result.json").read_text())["messages"]
    updates = as_updates(items)
    url = args.db or f"sqlite+aiosqlite:///{work / 'live.db'}"
    api = FakeBotAPI().start()
    api.admins[CHAT_ID] = [tg.member(tg.user(h), "administrator") for h in HOSTS]
    api.admins[CHAT_ID].append(tg.member(tg.user(BOT_ID, "opsbot", True), "administrator"))
    api.member_counts[CHAT_ID] = len(items[0]["members"]) + 1
    config = Config(token=TOKEN, api_base_url=api.base_url, storage_url=url)
    async with running(build_application(config), poll_timeout=1):
        t = time.perf_counter()
        api.push(*updates)
        await asyncio.to_thread(api.wait_confirmed, 3600)
        live = time.perf_counter() - t
    api.stop()
    print(f"real path: {len(updates):,} updates in {live:.1f} s = {len(updates) / live:,.0f}/s")

    repo = await Repo.open(url)
    tables = {}
    async with repo.engine.connect() as conn:
        for model in (MembershipEventRow, MessageRow, ActivityRow):
            cols = [c for c in model.__table__.columns if c.name != "id"]
            rows = (await conn.execute(select(*cols))).mappings().all()
            tables[model] = [dict(r) for r in rows]
    await repo.close()
    raw_url = f"sqlite+aiosqlite:///{work / 'raw.db'}" if not args.db else args.db + "_raw"
    raw = await Repo.open(raw_url)
    t = time.perf_counter()
    async with raw.engine.begin() as conn:
        for model, rows in tables.items():
            if rows:
                await conn.execute(insert(model), rows)
    ceiling = time.perf_counter() - t
    await raw.close()
    print(f"raw executemany of the same {sum(map(len, tables.values())):,} rows: {ceiling:.2f} s "
          f"= {len(updates) / ceiling:,.0f} updates/s; real path at "
          f"{ceiling / live:.1%} of the ceiling")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=4)
    p.add_argument("--db", help="database URL for the live run (default: SQLite)")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
