"""`opsbot run` and the network at start: a Bot API that cannot be reached is waited for (one
line when lost, one when reached), a stop meanwhile ends cleanly, a refusal ends at once with
one line (rc 2), and `[telegram] proxy` carries every request."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from telegram.error import NetworkError

from bot.app import build_application
from bot.cli import main
from bot.config import Config, ConfigError, config_from_mapping, load_config
from tests import tg
from tests.botapi_server import TOKEN, FakeBotAPI
from tests.e2e import bot_running, free_port, make_config, settle
from tests.test_kill_restart import ROOT, start_bot, stored

OUTAGE_S = 5.0
GROUP = tg.group(-100777, "Camp")
ALICE = tg.user(10, "Alice")
T = 1_764_000_000
PROXY_PASSWORD = "pr0xy-secret"




def write_config(tmp_path: Path, api_base_url: str, db_url: str, **telegram: str | int) -> Path:
    lines = [f'token = "{TOKEN}"', f'api_base_url = "{api_base_url}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in telegram.items()]
    config = tmp_path / "config.toml"
    config.write_text("[telegram]\n" + "\n".join(lines) + f'\n[storage]\nurl = "{db_url}"\n')
    config.chmod(0o600)
    return config


class ForwardProxy:
    """A plain-HTTP forward proxy (absolute-form requests, no CONNECT: the Bot API URL is
    http://), answering 502 when the server behind it refuses, as real proxies do."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []  # (Bot API method, carried proxy credentials)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                target = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.seen.append(
                    (target.path.rsplit("/", 1)[-1], "Proxy-Authorization" in self.headers)
                )
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() in ("content-type", "content-length", "user-agent")
                }
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                try:
                    conn.request(self.command, target.path, body, headers)
                    answer = conn.getresponse()
                    status, payload = answer.status, answer.read()
                    kind = answer.getheader("Content-Type", "application/json")
                except ConnectionRefusedError:
                    status, payload, kind = 502, b"<h1>502 Bad Gateway</h1>", "text/html"
                finally:
                    conn.close()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, credentials: str = "") -> str:
        return f"http://{credentials}127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class TcpServer:
    """A local TCP server that accepts connections; by itself it never answers, as a Bot API
    behind a network that drops packets looks to the bot (a request in flight until its
    timeout)."""

    scheme = "http"

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.open: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn = self.sock.accept()[0]
                self.open.append(conn)
                self.connected(conn)

    def connected(self, conn: socket.socket) -> None:
        pass

    def stop(self) -> None:
        self.sock.close()
        for conn in self.open:
            conn.close()


class Socks5Proxy(TcpServer):
    """A SOCKS5 proxy (RFC 1928: no authentication, CONNECT) that records where it connects."""

    scheme = "socks5"

    def __init__(self) -> None:
        self.connects: list[tuple[str, int]] = []
        super().__init__()

    def connected(self, conn: socket.socket) -> None:
        threading.Thread(target=self._tunnel, args=(conn,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            _, n_methods = _recv(client, 2)
            assert 0 in _recv(client, n_methods)  # "no authentication" offered
            client.sendall(b"\x05\x00")
            _, command, _, address_type = _recv(client, 4)
            assert (command, address_type) == (1, 1)  # CONNECT to an IPv4 address
            host = socket.inet_ntoa(_recv(client, 4))
            port = int.from_bytes(_recv(client, 2), "big")
            upstream = socket.create_connection((host, port))
            self.open.append(upstream)
            self.connects.append((host, port))
            client.sendall(b"\x05\x00\x00\x01" + bytes(6))
            threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
            _pipe(client, upstream)


def _recv(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _pipe(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            target.sendall(chunk)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def wait_for_line(log_path: Path, pattern: str, timeout_s: float = 30.0) -> None:
    wait_until(lambda: re.search(pattern, log_path.read_text()) is not None, timeout_s)


def bot_api_lines(log: str) -> list[str]:
    return [line.split(": ", 1)[1] for line in log.splitlines() if "the Bot API at" in line]


def group_day(api: FakeBotAPI) -> None:
    api.push(
        tg.chat_member(GROUP, ALICE, T, tg.member(ALICE, "left"), tg.member(ALICE, "member")),
        tg.message(GROUP, 5, T + 60, ALICE, "hello"),
    )


@pytest.mark.parametrize("via_proxy", [False, True], ids=["direct", "proxy"])
async def test_run_waits_for_an_unreachable_bot_api_then_starts_and_stores(
    tmp_path: Path, db_url: str, via_proxy: bool
) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    proxy = ForwardProxy() if via_proxy else None
    extra = {"proxy": proxy.url(f"opsbot:{PROXY_PASSWORD}@")} if proxy else {}
    config = write_config(tmp_path, base_url, db_url, **extra)
    log_path = tmp_path / "bot.log"
    api: FakeBotAPI | None = None
    with log_path.open("ab") as log:
        proc = start_bot(config, log)
        try:
            await asyncio.to_thread(wait_for_line, log_path, "cannot reach")
            await asyncio.sleep(OUTAGE_S)  # connections refused (or 502 from the proxy)
            api = FakeBotAPI(port=port).start()
            await asyncio.to_thread(wait_for_line, log_path, "reached the Bot API", 40)
            group_day(api)
            await settle(api, wait_s=30)
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=30)
            if api is not None:
                api.stop()
            if proxy is not None:
                proxy.stop()
    text = log_path.read_text()
    assert rc == 0
    assert "Traceback" not in text
    assert TOKEN.split(":")[1] not in text
    assert PROXY_PASSWORD not in text
    where = base_url + (f" (through the proxy {proxy.url()})" if proxy else "")
    reason = "HTTP 502" if proxy else "ConnectError: All connection attempts failed"
    lost, reached = bot_api_lines(text)  # exactly these two
    assert lost == f"cannot reach the Bot API at {where}: {reason}; retrying"
    waited = re.fullmatch(
        rf"reached the Bot API at {re.escape(where)} again after (\d+) s", reached
    )
    assert waited is not None, reached
    assert OUTAGE_S - 1 <= int(waited[1]) <= OUTAGE_S + 20
    rows = await stored(db_url)
    assert [(r[0], r[1]) for r in rows["membership"]] == [(10, "join")]
    assert [(r[0], r[2]) for r in rows["messages"]] == [(5, 10)]
    if proxy is not None:
        methods = {method for method, _ in proxy.seen}
        # both request objects (calls, and the getUpdates long poll) go through the proxy
        assert {"getMe", "deleteWebhook", "getUpdates", "sendMessage"} <= methods
        assert all(authorized for _, authorized in proxy.seen)


@pytest.mark.parametrize(
    ("sig", "network"),
    [(signal.SIGTERM, "refused"), (signal.SIGINT, "refused"), (signal.SIGTERM, "silent")],
    ids=["SIGTERM-in-back-off", "Ctrl-C-in-back-off", "SIGTERM-in-flight"],
)
def test_stop_while_waiting_for_the_bot_api_ends_cleanly(
    tmp_path: Path, sig: signal.Signals, network: str
) -> None:
    silent = TcpServer() if network == "silent" else None
    url = silent.url if silent else f"http://127.0.0.1:{free_port()}"
    config = write_config(tmp_path, url, f"sqlite:///{tmp_path / 'opsbot.db'}")
    log_path = tmp_path / "bot.log"
    with log_path.open("ab") as log:
        proc = start_bot(config, log)
        try:
            if silent:  # getMe sent, no answer yet: a 5 s read timeout ahead
                wait_until(lambda: bool(silent.open))
            else:
                wait_for_line(log_path, "cannot reach")
                time.sleep(2.0)  # into a longer back-off
        finally:
            proc.send_signal(sig)
            signalled = time.monotonic()
            rc = proc.wait(timeout=30)
            if silent:
                silent.stop()
    text = log_path.read_text()
    assert rc == 0
    assert time.monotonic() - signalled < 3  # neither the next try nor a timeout awaited
    assert "Traceback" not in text
    assert len(bot_api_lines(text)) == (0 if silent else 1)
    assert "stopped before start-up finished" in text


def run_cli(config: Path) -> tuple[int, list[str], float]:
    """`opsbot run` as a user starts it: exit code, output lines, seconds taken."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "run", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert "Traceback" not in output
    assert TOKEN not in output
    return done.returncode, output.strip().splitlines(), time.monotonic() - started


def test_a_wrong_token_ends_at_once_with_one_line(tmp_path: Path) -> None:
    api = FakeBotAPI(token="123456:ANOTHER-TOKEN").start()  # 401 Unauthorized for ours
    try:
        config = write_config(tmp_path, api.base_url, f"sqlite:///{tmp_path / 'opsbot.db'}")
        rc, lines, seconds = run_cli(config)
    finally:
        api.stop()
    assert rc == 2
    assert lines == [
        "opsbot: Telegram rejected the bot token: check telegram.token or OPSBOT_TOKEN, and "
        f"that telegram.api_base_url ({api.base_url}) is a Bot API server"
    ]
    assert seconds < 30  # no waiting: this is no network problem


def test_a_refused_webhook_ends_at_once_with_one_line(tmp_path: Path) -> None:
    api = FakeBotAPI().start()
    reason = "bad webhook: An HTTPS URL must be provided for webhook"
    api.fail_next("setWebhook", error_code=400, description=f"Bad Request: {reason}")
    try:
        config = write_config(
            tmp_path,
            api.base_url,
            f"sqlite:///{tmp_path / 'opsbot.db'}",
            mode="webhook",
            webhook_url="http://bot.example/telegram",
            webhook_port=free_port(),
        )
        rc, lines, seconds = run_cli(config)
    finally:
        api.stop()
    assert rc == 2
    # the application had started (its INFO lines), then stopped: the last line says why
    said = reason.capitalize()  # as PTB words Telegram's description
    assert lines[-1] == f"opsbot: the Bot API at {api.base_url} refused to start the bot: {said}"
    assert all(" INFO " in line for line in lines[:-1])
    assert seconds < 30


async def test_server_errors_at_start_are_waited_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 5xx (Telegram's front end, or a proxy, without a Bot API behind it) is no answer."""
    api = FakeBotAPI().start()
    api.fail_next("getMe", count=2, error_code=500, description="Internal Server Error")
    api.fail_next("deleteWebhook", count=1, error_code=502, description="Bad Gateway")
    try:
        config = make_config(api, f"sqlite+aiosqlite:///{tmp_path / 'opsbot.db'}")
        with caplog.at_level(logging.INFO, logger="bot.network"):
            async with bot_running(config):
                group_day(api)
                await settle(api)
    finally:
        api.stop()
    lines = [re.sub(r"\d+ s$", "N s", r.getMessage()) for r in caplog.records]
    assert lines == [
        f"cannot reach the Bot API at {api.base_url}: HTTP 500; retrying",
        f"reached the Bot API at {api.base_url} again after N s",
        f"cannot reach the Bot API at {api.base_url}: HTTP 502; retrying",
        f"reached the Bot API at {api.base_url} again after N s",
    ]
    assert [c.status for c in api.calls_of("getMe")][:3] == [500, 500, 200]


@pytest.mark.parametrize(
    "proxy",
    [
        "ftp://opsbot:pr0xy-secret@127.0.0.1:21",
        "127.0.0.1:3128",
        "http://127.0.0.1",
        "http://127.0.0.1:99999",
        "socks4://127.0.0.1:1080",
    ],
)
def test_a_bad_proxy_is_one_line_naming_the_key(
    tmp_path: Path, proxy: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, "https://api.telegram.org", "sqlite:///x.db", proxy=proxy)
    assert main(["run", "--config", str(config)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("opsbot: config error: telegram.proxy: ")
    assert PROXY_PASSWORD not in line
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize(
    "proxy",
    [
        "http://127.0.0.1:3128",
        "https://proxy.example:443",
        "http://user:password@proxy.example:8080",
        "socks5://127.0.0.1:1080",
        "socks5h://user:password@127.0.0.1:1080",
    ],
)
def test_proxy_urls_are_accepted_and_build_the_bot(proxy: str) -> None:
    config = config_from_mapping({"telegram": {"token": TOKEN, "proxy": proxy}})
    assert config.proxy == proxy
    application = build_application(config)  # SOCKS needs python-telegram-bot[socks]
    assert application.bot.request is not application.bot._request[0]  # two request objects


def test_proxy_must_be_a_string() -> None:
    with pytest.raises(ConfigError, match=r"^telegram\.proxy: "):
        config_from_mapping({"telegram": {"proxy": 3128}})


def test_the_example_proxy_line_works_when_uncommented(tmp_path: Path) -> None:
    example = (ROOT / "config.example.toml").read_text()
    assert example.count('\n# proxy = "') == 1
    config = tmp_path / "config.toml"
    config.write_text(example.replace('\n# proxy = "', '\nproxy = "'))
    assert load_config(str(config)).proxy == "socks5://127.0.0.1:1080"


async def test_a_socks5_proxy_carries_every_request(tmp_path: Path) -> None:
    api, proxy = FakeBotAPI().start(), Socks5Proxy()
    try:
        db_url = f"sqlite+aiosqlite:///{tmp_path / 'opsbot.db'}"
        config = replace(make_config(api, db_url), proxy=proxy.url)
        async with bot_running(config):
            group_day(api)
            await settle(api)
    finally:
        api.stop()
        proxy.stop()
    assert set(proxy.connects) == {("127.0.0.1", api.server.server_address[1])}
    assert len(proxy.connects) >= 2  # the calls' connection and the long poll's
    rows = await stored(db_url)
    assert [(r[0], r[2]) for r in rows["messages"]] == [(5, 10)]


async def test_outside_opsbot_runs_start_up_an_unreachable_bot_api_is_an_error() -> None:
    """Only `opsbot run`'s start-up waits: other users of the bot (opsbot check) get the
    error at once."""
    config = Config(token=TOKEN, api_base_url=f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(NetworkError):
        async with build_application(config).bot:
            pass
    assert time.monotonic() - started < 5


def test_opsbot_check_goes_through_the_proxy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api, proxy = FakeBotAPI().start(), ForwardProxy()
    try:
        db = f"sqlite:///{tmp_path / 'opsbot.db'}"
        config = write_config(tmp_path, api.base_url, db, proxy=proxy.url())
        main(["check", "--config", str(config)])
    finally:
        api.stop()
        proxy.stop()
    assert "✅ token: Telegram knows this bot as @opsbot_test_bot" in capsys.readouterr().out
    assert "getMe" in {method for method, _ in proxy.seen}
