"""`opsbot run` killed with SIGKILL at random points while a day streams in: after the
restarts, the stored rows equal those of an uninterrupted run (no loss, no doubles)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select

from bot import synthetic
from storage.models import ActivityRow, HostEventRow, MembershipEventRow, MessageRow
from storage.repo import Repo
from tests import tg
from tests.botapi_server import BOT_ID, TOKEN, FakeBotAPI
from tests.e2e import bot_running, make_config, settle
from tests.test_import_equals_live import CHAT_ID, HOSTS, SPEC, as_updates

KILLS = int(os.environ.get("OPSBOT_KILL_POINTS", "20"))
ROOT = Path(__file__).resolve().parents[1]


def server_for_day(items: list[dict[str, Any]]) -> FakeBotAPI:
    api = FakeBotAPI().start()
    api.admins[CHAT_ID] = [
        tg.member(tg.user(h, f"Host {i}"), "creator" if i == 0 else "administrator")
        for i, h in enumerate(HOSTS)
    ]
    api.admins[CHAT_ID].append(tg.member(tg.user(BOT_ID, "opsbot", True), "administrator"))
    api.member_counts[CHAT_ID] = len(items[0]["members"]) + 1
    return api


async def stored(url: str) -> dict[str, list[tuple[Any, ...]]]:
    repo = await Repo.open(url)
    try:
        async with repo.engine.connect() as conn:
            queries = {
                "membership": select(
                    MembershipEventRow.user_id, MembershipEventRow.kind, MembershipEventRow.ts
                ),
                "hosts": select(HostEventRow.user_id, HostEventRow.is_host),
                "messages": select(
                    MessageRow.message_id,
                    MessageRow.role,
                    MessageRow.sender_id,
                    MessageRow.reply_to_message_id,
                    MessageRow.is_question,
                ),
                "activity": select(ActivityRow.level, ActivityRow.user_id, ActivityRow.message_id),
            }
            return {
                k: sorted(tuple(r) for r in (await conn.execute(q)).all())
                for k, q in queries.items()
            }
    finally:
        await repo.close()


def day_updates(tmp_path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The synthetic day's export items, and the same history as Bot API updates."""
    export = tmp_path / "result.json"
    synthetic.write_export(SPEC, export)
    items = json.loads(export.read_text())["messages"]
    return items, as_updates(items)


async def reference_rows(
    tmp_path: Path, items: list[dict[str, Any]], updates: list[dict[str, Any]]
) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of one uninterrupted run of the stream."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'reference.db'}"
    api = server_for_day(items)
    try:
        async with bot_running(make_config(api, url)):
            api.push(*updates)
            await settle(api, wait_s=60)
    finally:
        api.stop()
    rows = await stored(url)
    assert len(rows["messages"]) > 100
    return rows


def config_file(tmp_path: Path, api: FakeBotAPI, db_url: str) -> Path:
    """The config an `opsbot run` process reads (token file mode 600, as advised)."""
    config = tmp_path / "config.toml"
    config.write_text(
        f'[telegram]\ntoken = "{TOKEN}"\napi_base_url = "{api.base_url}"\n'
        f'[storage]\nurl = "{db_url}"\n'
    )
    config.chmod(0o600)
    return config


async def _progressed(api: FakeBotAPI, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Wait until the running bot has confirmed at least one more update (or the stream is
    over, or the process died)."""
    before = len(api.updates)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while len(api.updates) == before and api.updates and proc.poll() is None:
        if loop.time() > deadline:
            return
        await asyncio.sleep(0.05)


def start_bot(config: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "run", "--config", str(config)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def test_sigkill_at_random_points_loses_and_doubles_nothing(
    tmp_path: Path, db_url: str
) -> None:
    items, updates = day_updates(tmp_path)
    expected = await reference_rows(tmp_path, items, updates)

    api = server_for_day(items)
    api.max_batch, api.poll_delay = 3, 0.1  # a slow stream: the kills land in its middle
    config = config_file(tmp_path, api, db_url)
    log_path = tmp_path / "bot.log"
    rng = random.Random(7)
    try:
        log = log_path.open("ab")
        api.push(*updates)
        for i in range(KILLS):
            proc = start_bot(config, log)
            if i % 2 == 0:
                await asyncio.sleep(rng.uniform(0.3, 2.5))  # start-up included: kill points too
            else:
                # mid-stream, however slowly this machine starts a process: once the bot
                # has confirmed something, at a random point of its next batches
                await _progressed(api, proc, timeout_s=60)
                await asyncio.sleep(rng.uniform(0.0, 0.4))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert api.updates, "the stream ended before the last kill: make it slower"
        assert len(api.updates) < len(updates), "no kill landed after the stream started"
        proc = start_bot(config, log)
        try:
            caught_up = await asyncio.to_thread(api.wait_confirmed, 240)
            assert caught_up, "the bot did not catch up in time"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    finally:
        log.close()
        api.stop()
    assert "Traceback" not in log_path.read_text()
    assert await stored(db_url) == expected
