"""`opsbot dashboard`: the dashboard alone, in its own process, over the bot's database."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.cli import main
from bot.web.app import login_link
from storage.repo import Repo
from tests import tg
from tests.botapi_server import TOKEN, FakeBotAPI
from tests.test_web_e2e import free_port
from tests.web_helpers import ADMIN, OUTSIDER, config_for, sign_init_data, small_group


@pytest.fixture
def api() -> Iterator[FakeBotAPI]:
    server = FakeBotAPI().start()
    yield server
    server.stop()


async def test_dashboard_serves_alone_and_accepts_the_bots_login_links(
    api: FakeBotAPI, tmp_path: Path
) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    repo = await Repo.open(db_url)
    chat_id = await small_group(repo, config_for(db_url), tmp_path, days=3)
    api.admins[chat_id] = [tg.member(tg.user(ADMIN, "Host 0"), "administrator")]
    port = free_port()
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[telegram]\ntoken = "{TOKEN}"\napi_base_url = "{api.base_url}"\n'
        f'[storage]\nurl = "{db_url}"\n'
        f'[dashboard]\nport = {port}\npublic_url = "https://dash.example.org"\n'
    )
    cfg.chmod(0o600)
    # the bot, in its own process, hands out a login link: stored in the shared database
    link = await login_link(repo, "https://dash.example.org", ADMIN, chat_id)
    await repo.close()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "dashboard",
        "--config",
        str(cfg),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line.strip() == f"opsbot: dashboard on http://127.0.0.1:{port}", line
        local = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=local) as client:
            first = await client.get(re.sub(r"^https://[^/]+", "", link))
            assert first.status_code == 200
            assert "Secure" in first.headers["set-cookie"]
            tma = {"Authorization": f"tma {sign_init_data(TOKEN, ADMIN)}"}
            resp = await client.get(f"/api/chats/{chat_id}/report", headers=tma)
            assert resp.status_code == 200
            assert resp.json()["chat_id"] == chat_id
            other = {"Authorization": f"tma {sign_init_data(TOKEN, OUTSIDER)}"}
            assert (await client.get(f"/chats/{chat_id}", headers=other)).status_code == 403
        assert api.calls_of("getChatMember")  # admins now, asked of Telegram with the token
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("port = 0", "opsbot: config error: dashboard.port: expected a port number"),
        ('public_url = "dash.example.org"', "opsbot: config error: dashboard.public_url: "),
        ("enabled = 1", "opsbot: config error: dashboard.enabled: expected true or false"),
        ("colour = 1", "opsbot: config error: dashboard.colour: unknown key"),
    ],
)
def test_bad_dashboard_config_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], section: str, message: str
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[dashboard]\n{section}\n")
    assert main(["dashboard", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message)
    assert len(err.strip().splitlines()) == 1


def test_dashboard_never_creates_a_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[storage]\nurl = "sqlite:///{tmp_path / "none.db"}"\n')
    assert main(["dashboard", "--config", str(cfg)]) == 1
    assert "there is no database at" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()


def test_demo_serve_refuses_a_bad_port(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("")
    out = tmp_path / "demo"
    assert (
        main(["demo", "--serve", "--port", "70000", "--out", str(out), "--config", str(cfg)]) == 2
    )
    assert capsys.readouterr().err == "opsbot: --port: expected a port number (1 to 65535)\n"
    assert not out.exists()  # nothing built


def test_a_busy_port_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = tmp_path / "c.toml"
        cfg.write_text(
            f'[storage]\nurl = "sqlite:///{tmp_path / "x.db"}"\n[dashboard]\nport = {port}\n'
        )
        assert main(["db", "upgrade", "--config", str(cfg)]) == 0
        capsys.readouterr()
        assert main(["dashboard", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"opsbot: dashboard: cannot listen on 127.0.0.1:{port} (Address already in use)\n"
    )
