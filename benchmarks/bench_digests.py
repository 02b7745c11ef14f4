"""Benchmark: the daily digests of 1,000 groups of 1,000 members, computed and sent.

    python -m benchmarks.bench_digests [--groups 1000] [--members 1000] [--cold] [--db URL]

Sends go through python-telegram-bot's AIORateLimiter to the tests' fake Bot API server
on 127.0.0.1, so the figure shows how much of a digest round is our computation and how
much is Telegram's rate limit (30 messages a second over all chats).

The timed round is a running bot's: the round of the day before has run (untimed), and
kept what it computes for later reads (daily rollups), as it does every day. Today's
round then computes what is new since: yesterday, and the day before's next-day cohort.
`--cold` times a first round on a database that has kept nothing yet instead.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from benchmarks.bench_ingest import scratch_db
from bot import reports, service
from bot.app import settle_heap
from bot.config import Config
from storage.models import ActivityRow, Chat, MembershipEventRow
from storage.repo import Repo


async def build(repo: Repo, groups: int, members: int, now: datetime) -> None:
    rng = random.Random(5)
    start = int((now - timedelta(days=30)).timestamp())
    async with repo.engine.begin() as conn:
        await conn.execute(
            insert(Chat),
            [
                {
                    "chat_id": -1000 - g,
                    "title": f"Group {g}",
                    "type": "supergroup",
                    "tracking_start_ts": start,
                    "baseline_count": members // 2,
                    "bot_status": "administrator",
                    "bot_is_admin": True,
                }
                for g in range(groups)
            ],
        )
        events, marks = [], []
        for g in range(groups):
            for u in range(members // 2):
                ts = start + rng.randrange(30 * 86400)
                events.append(
                    {
                        "chat_id": -1000 - g,
                        "user_id": 10_000 + u,
                        "kind": "join",
                        "ts": ts,
                        "seq": 0,
                        "source": "bench",
                    }
                )
                if rng.random() < 0.25:
                    events.append(
                        {
                            "chat_id": -1000 - g,
                            "user_id": 10_000 + u,
                            "kind": "leave",
                            "ts": ts + rng.randrange(3 * 86400),
                            "seq": 0,
                            "source": "bench",
                        }
                    )
                for day in range(0, 30, 3):
                    if rng.random() < 0.2:
                        marks.append(
                            {
                                "chat_id": -1000 - g,
                                "level": "response",
                                "message_id": len(marks),
                                "user_id": 10_000 + u,
                                "ts": start + day * 86400 + rng.randrange(86400),
                            }
                        )
        for i in range(0, len(events), 50_000):
            await conn.execute(insert(MembershipEventRow), events[i : i + 50_000])
        for i in range(0, len(marks), 50_000):
            await conn.execute(insert(ActivityRow), marks[i : i + 50_000])


DAY = timedelta(days=1)


async def digest_round(
    repo: Repo, config: Config, groups: int, day: date, now: datetime
) -> list[tuple[int, str]]:
    results = await service.digests(repo, config, [-1000 - g for g in range(groups)], now, day)
    return [
        (c, reports.digest_text(r.report, "zh", f"Group {-1000 - c}", r.net, r.changes))
        for c, r in results.items()
    ]


async def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="opsbot-digests-"))
    async with scratch_db(args.db, work / "bench.db") as url:
        await measure(args, url)


async def measure(args: argparse.Namespace, url: str) -> None:
    from bot.app import build_application
    from tests.botapi_server import TOKEN, FakeBotAPI

    now = datetime.now(UTC)
    repo = await Repo.open(url)
    await build(repo, args.groups, args.members, now)
    config = Config(token=TOKEN, storage_url=url)
    day = now.date() - timedelta(days=1)
    if not args.cold:  # yesterday's round, as the running bot did it
        await digest_round(repo, config, args.groups, day - timedelta(days=1), now - DAY)
    settle_heap()  # as the bot does once started
    t = time.perf_counter()
    texts = await digest_round(repo, config, args.groups, day, now)
    compute = time.perf_counter() - t
    print(
        f"computed {len(texts)} digests in {compute:.1f} s "
        f"({compute / len(texts) * 1000:.1f} ms each)"
    )
    api = FakeBotAPI().start()
    app = build_application(
        Config(token=TOKEN, api_base_url=api.base_url, storage_url=url), repo=repo
    )
    await app.initialize()
    t = time.perf_counter()
    await asyncio.gather(*[app.bot.send_message(chat, text) for chat, text in texts])
    send = time.perf_counter() - t
    await app.shutdown()
    api.stop()
    await repo.close()
    print(
        f"sent them through AIORateLimiter in {send:.1f} s; computation is "
        f"{compute / send:.0%} of the send time ({compute / (compute + send):.0%} of the round)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--groups", type=int, default=1000)
    p.add_argument("--members", type=int, default=1000)
    p.add_argument("--cold", action="store_true", help="time a first round, nothing kept yet")
    p.add_argument("--db", help="a PostgreSQL URL (a scratch database is made on its server)")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
