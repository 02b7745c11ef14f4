"""Benchmark: how long the dashboard's group page takes to load on a big group.

    python -m benchmarks.bench_dashboard [--members 200000] [--messages 5000000] [--days 90]

Takes the group of benchmarks/bench_metrics.py (generated there, or reused from its cache)
on a copy of its SQLite file with one admin recorded, then times the requests the group
page makes for its default range (14 join days): cohorts, active, report of yesterday and
of the day before, insights — through the ASGI app, as a browser would get them. "Cold":
nothing derived kept in the process (the rollups the first, untimed load kept stay, as in
a running bot); "warm": right after.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from benchmarks import bench_metrics as bm
from bot import metrics
from bot.config import Config
from bot.events import HostChange
from bot.web.access import Access
from bot.web.app import WebState, build_web_app, login_link
from storage.repo import Repo

ADMIN = bm.HOSTS[0]  # one of the group's hosts, recorded as an admin from the start


async def page_load(client: httpx.AsyncClient, chat_id: int, today: str) -> dict[str, float]:
    """Seconds per request the page makes, in the order dashboard.js makes them."""
    day = datetime.fromisoformat(today).date()
    a, b = (day - timedelta(days=13)).isoformat(), today
    y1, y2 = (day - timedelta(days=1)).isoformat(), (day - timedelta(days=2)).isoformat()
    paths = {
        "page": f"/chats/{chat_id}",
        "cohorts": f"/api/chats/{chat_id}/cohorts?from={a}&to={b}",
        "active": f"/api/chats/{chat_id}/active?from={a}&to={b}",
        "report": f"/api/chats/{chat_id}/report?date={y1}",
        "report-1": f"/api/chats/{chat_id}/report?date={y2}",
        "insights": f"/api/chats/{chat_id}/insights?from={a}&to={b}",
    }
    took: dict[str, float] = {}

    async def one(name: str, path: str) -> None:
        t = time.perf_counter()
        resp = await client.get(path)
        resp.raise_for_status()
        took[name] = time.perf_counter() - t

    t = time.perf_counter()
    await one("page", paths.pop("page"))
    await one("cohorts", paths.pop("cohorts"))  # first, as dashboard.js asks
    await asyncio.gather(*(one(k, v) for k, v in paths.items()))
    took["total"] = time.perf_counter() - t
    return took


def group_copy(args: argparse.Namespace, work: Path) -> str:
    """A private copy of bench_metrics' group at the current schema, as a SQLite URL."""
    p = bm.Params(args.members, args.messages, args.days)
    bm.CACHE.mkdir(exist_ok=True)
    cached = bm.ensure_sqlite(p, lambda: bm.generate(p))
    path = work / "bench.db"
    shutil.copyfile(cached.removeprefix("sqlite+aiosqlite:///"), path)
    return f"sqlite+aiosqlite:///{path}"


async def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="opsbot-bench-"))
    url = group_copy(args, work)
    config = Config(storage_url=url)
    chat_id = bm.CHAT_ID
    repo = await Repo.open(url)
    try:
        info = await repo.chat(chat_id)
        assert info is not None
        assert info.tracking_start_utc is not None
        before = info.tracking_start_utc - timedelta(days=1)  # a host all along
        await repo.set_host(HostChange(chat_id, ADMIN, before, True, 0, "admins"))
        now = datetime.now(UTC)
        today = metrics.local_day(now, config.defaults.tz).isoformat()
        state = WebState(repo, config, Access(repo, config, None), None)
        link = await login_link(repo, state.base_url, ADMIN, chat_id)
        transport = httpx.ASGITransport(app=build_web_app(state))
        async with httpx.AsyncClient(transport=transport, base_url=state.base_url) as client:
            await client.get(link.removeprefix(state.base_url))
            t = time.perf_counter()
            await page_load(client, chat_id, today)  # what a running bot has kept
            print(f"first load (rollups built): {time.perf_counter() - t:.1f} s")
            for cold in (True, False):
                runs = []
                for _ in range(args.repeats):
                    if cold:
                        repo.memo.clear()
                    runs.append(await page_load(client, chat_id, today))
                label = "cold" if cold else "warm"
                parts = "  ".join(
                    f"{k} {statistics.median(r[k] for r in runs) * 1000:,.0f} ms"
                    for k in runs[0]
                )
                print(f"{label}: {parts}")
    finally:
        await repo.close()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=200_000)
    p.add_argument("--messages", type=int, default=5_000_000)
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--repeats", type=int, default=3)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
