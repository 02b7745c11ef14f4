"""The uvicorn server that runs the dashboard in the bot's own event loop, as
python-telegram-bot's custom-webhook example with Starlette does, and the menu button."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Iterator

import uvicorn
from starlette.applications import Starlette
from telegram import Bot, MenuButtonWebApp, WebAppInfo
from telegram.error import TelegramError

from bot.config import Config
from bot.context import OpsApplication
from bot.web.access import Access
from bot.web.app import WebState, build_web_app
from bot.web.texts import texts
from storage.repo import Repo

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn inside our loop: the CLI owns SIGINT/SIGTERM, not uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bound_socket(listen: str, port: int) -> socket.socket:
    """The listening address, bound here: uvicorn would sys.exit() on a busy port."""
    try:
        family, type_, proto, _, address = socket.getaddrinfo(
            listen, port, type=socket.SOCK_STREAM
        )[0]
        sock = socket.socket(family, type_, proto)
    except OSError as exc:
        raise OSError(f"dashboard: cannot listen on {listen}:{port} ({exc})") from None
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise OSError(f"dashboard: cannot listen on {listen}:{port} ({exc.strerror})") from None
    return sock


@contextlib.asynccontextmanager
async def serving(app: Starlette, listen: str, port: int) -> AsyncIterator[None]:
    sock = bound_socket(listen, port)
    server = _Server(
        uvicorn.Config(app, host=listen, port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise OSError(f"dashboard: cannot listen on {listen}:{port}")
            await asyncio.sleep(0.02)
        yield
    finally:
        server.should_exit = True
        await task
        sock.close()


async def set_menu_button(bot: Bot, config: Config) -> None:
    """The bot's menu button opens the group list as a Mini App (HTTPS only)."""
    from handlers.dashboard import dashboard_url, mini_app_url

    base = dashboard_url(config)
    url = mini_app_url(base, None) if base else None
    if url is None:
        log.warning("dashboard: public_url is not https://, so no Mini App menu button")
        return
    try:
        await bot.set_chat_menu_button(
            menu_button=MenuButtonWebApp(texts(config.defaults.language)["menu"], WebAppInfo(url))
        )
    except TelegramError as exc:
        log.warning("setChatMenuButton failed: %s", exc.__class__.__name__)


@contextlib.asynccontextmanager
async def dashboard_for(application: OpsApplication) -> AsyncIterator[None]:
    """`opsbot run`: the dashboard in the bot's process and loop, when [dashboard] enabled."""
    config: Config = application.bot_data["config"]
    if not config.dashboard.enabled:
        yield
        return
    repo: Repo = application.bot_data["repo"]
    cache = application.bot_data.setdefault("admin_checks", {})  # the commands' cache
    state = WebState(repo, config, Access(repo, config, application.bot, cache), config.token)
    await set_menu_button(application.bot, config)
    settings = config.dashboard
    try:
        server = serving(build_web_app(state), settings.listen, settings.port)
        await server.__aenter__()
    except OSError as exc:
        from bot.app import StartupError

        raise StartupError(f"{exc}: set [dashboard] listen / port") from None
    log.info("dashboard on %s:%s", settings.listen, settings.port)
    try:
        yield
    finally:
        await server.__aexit__(None, None, None)
