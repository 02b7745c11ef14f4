"""Benchmark: how long the dashboard's group page takes to load on a big group.

    python -m benchmarks.bench_dashboard --members 200000 --messages 5000000 --days 90

Builds (or, with --reuse, reopens) the group of benchmarks/bench_metrics.py, then times the
requests the group page makes for its default range (14 join days): cohorts, active,
report of yesterday and of the day before, insights — through the ASGI app, as a browser
would get them, cold (a new process: nothing derived kept) and warm.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from benchmarks.bench_metrics import spec_for
from bot import metrics, synthetic
from bot.config import Config
from bot.importer import import_export
from bot.web.access import Access
from bot.web.app import WebState, build_web_app, login_link
from storage.repo import Repo


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


async def run(args: argparse.Namespace) -> None:
    work = Path(args.dir or tempfile.mkdtemp(prefix="opsbot-bench-"))
    work.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (a benchmark)
    spec = spec_for(args.members, args.messages, args.days)
    url = args.db or f"sqlite+aiosqlite:///{work / 'bench.db'}"
    config = Config(storage_url=url)
    chat_id = int(f"-100{spec.chat_id}")
    repo = await Repo.open(url)
    try:
        if not args.reuse:
            export = work / "result.json"
            synthetic.write_export(spec, export)
            hosts = [synthetic.HOST_BASE_ID + i for i in range(spec.hosts)]
            await import_export(repo, config, export, hosts=hosts)
        now = datetime.now(UTC)
        today = metrics.local_day(now, config.defaults.tz).isoformat()
        state = WebState(repo, config, Access(repo, config, None), None)
        link = await login_link(repo, state.base_url, synthetic.HOST_BASE_ID, chat_id)
        transport = httpx.ASGITransport(app=build_web_app(state))
        async with httpx.AsyncClient(transport=transport, base_url=state.base_url) as client:
            await client.get(link.removeprefix(state.base_url))
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=200_000)
    p.add_argument("--messages", type=int, default=5_000_000)
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dir", help="working folder (default: a temp dir)")
    p.add_argument("--db", help="database URL (default: SQLite in the working folder)")
    p.add_argument("--reuse", action="store_true", help="skip generating and importing")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
