"""`opsbot dashboard` (the dashboard alone, over the bot's database) and `opsbot demo --serve`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from bot.config import Config, DashboardSettings, replace_storage

if TYPE_CHECKING:
    from bot.web.app import WebState


def add_dashboard_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    add_config: Callable[[argparse.ArgumentParser], None],
) -> None:
    dash = sub.add_parser(
        "dashboard",
        help="serve the web dashboard alone, over the bot's database (the bot runs elsewhere)",
        epilog="Sign in with the login link the bot's /dashboard sends, or from the Mini App.",
    )
    add_config(dash)
    dash.set_defaults(func=cmd_dashboard)


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def serve_until_signal(
    config: Config, *, announce: Callable[[WebState], Awaitable[None]] | None = None
) -> int:
    """Serve the dashboard over config's database until Ctrl-C or SIGTERM."""
    from telegram import Bot

    from bot.web.access import Access
    from bot.web.app import WebState, build_web_app  # noqa: F811
    from bot.web.server import serving
    from storage import db
    from storage.repo import Repo

    # only reads the bot's database (and keeps its sign-ins there): never creates one
    repo = Repo(await db.open_engine(config.storage_url, create=False))
    # with a token: Telegram says who is an admin now; without: the stored admin lists
    bot = Bot(config.token, base_url=f"{config.api_base_url}/bot") if config.token else None
    try:
        state = WebState(repo, config, Access(repo, config, bot), config.token)
        settings = config.dashboard
        try:
            async with serving(build_web_app(state), settings.listen, settings.port):
                print(f"opsbot: dashboard on http://{settings.listen}:{settings.port}", flush=True)
                if announce is not None:
                    await announce(state)
                await _until_signal()
        except OSError as exc:
            print(f"opsbot: {exc}", file=sys.stderr)
            return 2
    finally:
        if bot is not None:
            await bot.shutdown()
        await repo.close()
    return 0


def cmd_dashboard(args: argparse.Namespace, config: Config) -> int:
    return asyncio.run(serve_until_signal(config))


def serve_demo(config: Config, db_path: Path, port: int) -> int:
    """`opsbot demo --serve`: the dashboard on the demo database, signed in by a login link
    for the demo group's first host (an admin of it)."""
    from bot import synthetic
    from bot.web.app import login_link

    config = replace(
        replace_storage(config, f"sqlite+aiosqlite:///{db_path.resolve()}"),
        token=None,
        dashboard=DashboardSettings(True, "127.0.0.1", port),
    )
    chat_id = int(f"-100{synthetic.GroupSpec().chat_id}")

    async def announce(state: WebState) -> None:
        link = await login_link(state.repo, state.base_url, synthetic.HOST_BASE_ID, chat_id)
        print(
            "\n4. the dashboard on this database (Ctrl-C stops it); this link signs you in once:"
        )
        print(link, flush=True)

    return asyncio.run(serve_until_signal(config, announce=announce))
