"""The database goes away in the middle of a stream: ingest waits, fetches nothing new,
logs the outage once, and when the database is back the stored rows equal those of an
uninterrupted run (no loss, no doubles).

Two outages: an injected one (every statement fails, on SQLite and PostgreSQL, in process)
and a real one (`pg_ctlcluster … stop`/`start` of the PostgreSQL server under a running
`opsbot run`)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from storage.repo import Repo
from tests.e2e import bot_running, make_config, settle
from tests.test_kill_restart import (
    config_file,
    day_updates,
    reference_rows,
    server_for_day,
    start_bot,
    stored,
)

PG_URL = os.environ.get("OPSBOT_TEST_DATABASE_URL")


async def test_injected_outage_keeps_updates_and_stores_them_once(
    tmp_path: Path, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    items, updates = day_updates(tmp_path)
    expected = await reference_rows(tmp_path, items, updates)
    third = len(updates) // 3

    down = threading.Event()  # statements run in the driver's thread: a thread-safe flag

    def fail_while_down(*_: Any) -> None:
        if down.is_set():
            raise OperationalError("(injected)", None, ConnectionError("database unavailable"))

    api = server_for_day(items)
    try:
        with caplog.at_level(logging.WARNING, logger="bot.ingest"):
            async with bot_running(make_config(api, db_url)) as app:
                repo: Repo = app.bot_data["repo"]
                event.listen(repo.engine.sync_engine, "before_cursor_execute", fail_while_down)
                api.push(*updates[:third])
                await settle(api, wait_s=60)
                before = await stored(db_url)
                down.set()
                ids = api.push(*updates[third:])
                await asyncio.sleep(3)
                # nothing of the outage was confirmed to Telegram
                assert api.updates
                assert api.updates[0]["update_id"] == ids[0]
                down.clear()
                assert await stored(db_url) == before  # nothing half-written meanwhile
                await settle(api, wait_s=90)
    finally:
        api.stop()
    assert await stored(db_url) == expected
    outage_lines = [r for r in caplog.records if "database unavailable" in r.getMessage()]
    back_lines = [r for r in caplog.records if "available again" in r.getMessage()]
    assert len(outage_lines) == 1, [r.getMessage() for r in outage_lines]
    assert len(back_lines) == 1


def _cluster_for(port: str) -> tuple[str, str] | None:
    """(version, name) of the local Debian PostgreSQL cluster on `port`, if any."""
    if shutil.which("pg_lsclusters") is None or shutil.which("pg_ctlcluster") is None:
        return None
    out = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=False
    ).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == port and fields[3] == "online":
            return fields[0], fields[1]
    return None


def _pg_ctl(cluster: tuple[str, str], action: str) -> None:
    subprocess.run(["pg_ctlcluster", *cluster, action], check=True, capture_output=True)


def _wait_pg(port: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if subprocess.run(["pg_isready", "-q", "-p", port], check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError("PostgreSQL did not come back")


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_postgres_stopped_and_started_mid_stream_loses_nothing(
    tmp_path: Path, db_url: str
) -> None:
    assert PG_URL is not None
    port = str(urlsplit(PG_URL.replace("+asyncpg", "")).port or 5432)
    cluster = _cluster_for(port)
    if cluster is None:
        pytest.skip("no local Debian PostgreSQL cluster (pg_ctlcluster) serves the test URL")
    if os.environ.get("OPSBOT_TEST_PG_RESTART") != "1":
        pytest.skip("stops and restarts the local PostgreSQL server: set OPSBOT_TEST_PG_RESTART=1")
    if os.geteuid() != 0 and os.environ.get("USER") != "postgres":
        pytest.skip("pg_ctlcluster needs root or the postgres user to stop the server")
    items, updates = day_updates(tmp_path)
    expected = await reference_rows(tmp_path, items, updates)

    api = server_for_day(items)
    api.max_batch = 20
    config = config_file(tmp_path, api, db_url)
    log_path = tmp_path / "bot.log"
    half = len(updates) // 2
    with log_path.open("ab") as log:
        proc = start_bot(config, log)
        try:
            api.push(*updates[:half])
            assert await asyncio.to_thread(api.wait_confirmed, 120), "first half not stored"
            _pg_ctl(cluster, "stop")
            try:
                api.push(*updates[half:])
                await asyncio.sleep(4)
                assert proc.poll() is None, "the bot exited while the database was down"
                assert api.updates, "updates were confirmed while the database was down"
            finally:
                _pg_ctl(cluster, "start")
                _wait_pg(port)
            assert await asyncio.to_thread(api.wait_confirmed, 120), "did not catch up"
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            api.stop()
    text = log_path.read_text()
    assert "Traceback" not in text
    assert text.count("database unavailable") == 1, text
    assert "available again" in text
    assert await stored(db_url) == expected
