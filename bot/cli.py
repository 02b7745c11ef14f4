"""`opsbot run | db | report | import | export | demo` — the command line (SPEC 8)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence

from bot.config import Config, ConfigError, load_config

log = logging.getLogger("opsbot")


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        help="TOML config file (default: $OPSBOT_CONFIG, then ./config.toml)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opsbot",
        description="Telegram bot for operations groups: retention and active-member rates.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the bot (long polling, or webhook per config)")
    _add_config(run)
    run.set_defaults(func=cmd_run)

    dbp = sub.add_parser("db", help="database schema: upgrade to the latest version, or status")
    _add_config(dbp)
    dbp.add_argument("action", choices=["upgrade", "status"])
    dbp.set_defaults(func=cmd_db)
    return parser


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    from bot.app import build_application, run_until

    if not config.token:
        print(
            "opsbot: telegram.token is not set: put it in the config file "
            "([telegram] token) or in OPSBOT_TOKEN",
            file=sys.stderr,
        )
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_until(build_application(config), stop)

    asyncio.run(main())
    return 0


def cmd_db(args: argparse.Namespace, config: Config) -> int:
    from storage import db

    async def main() -> str | None:
        engine = db.make_engine(config.storage_url)
        try:
            if args.action == "upgrade":
                await db.upgrade(engine)
            return await db.current_revision(engine)
        finally:
            await engine.dispose()

    revision = asyncio.run(main())
    print(f"schema revision: {revision or 'none (run: opsbot db upgrade)'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every request URL, and those URLs contain the bot token
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"opsbot: config error: {exc}", file=sys.stderr)
        return 2
    func: Callable[[argparse.Namespace, Config], int] = args.func
    try:
        return func(args, config)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
