"""`opsbot run | db | report | import | export | demo` — the command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import date
from typing import NoReturn

from bot.config import Config, ConfigError, config_path, load_config

log = logging.getLogger("opsbot")

TELEGRAM_EPOCH = date(2013, 8, 14)  # no group has a day before Telegram's launch


class CommandError(Exception):
    """Bad input on the command line: one line on stderr, exit 2, nothing changed."""

    exit_code = 2


def telegram_id(text: str) -> int:
    """A chat or user id: an integer that fits Telegram's (and the database's) 64 bits."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer id, got {text[:40]!r}") from None
    if not -(2**63) <= value < 2**63:
        raise argparse.ArgumentTypeError(f"{text[:40]} is not a Telegram id (too large)")
    return value


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        help="TOML config file (default: $OPSBOT_CONFIG, then ./config.toml)",
    )


class Parser(argparse.ArgumentParser):
    """argparse, with what the user typed shown escaped in its one error line (a line
    break or control character in an argument would otherwise break it up)."""

    def error(self, message: str) -> NoReturn:
        shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {shown}\n")


def build_parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = Parser(
        prog="opsbot",
        description="Telegram bot for operations groups: retention and active-member rates.",
        epilog="What every number means, with worked examples: docs/metrics.md. "
        "Exit codes: 0 done; 1 nothing to read (no database at [storage] url, no "
        "such group); 2 a problem to fix first, said in one line (an argument, the config, "
        "a database that cannot be reached or opened, an --out folder). Only run, import, "
        "demo and db upgrade create a database.",
    )
    parser.add_argument("--version", action="version", version=f"opsbot {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the bot (long polling, or webhook per config)")
    _add_config(run)
    run.set_defaults(func=cmd_run)

    dbp = sub.add_parser(
        "db",
        help="database schema: upgrade to the latest version, or status; refresh the "
        "daily rollups",
        description="upgrade creates the database and its tables or brings them up to "
        "date; status only reads (exit code 1 where there is no database); refresh "
        "computes every group's finished days not kept yet in the daily rollups (the "
        "daily_metrics view), as reports do on their own for the days they show.",
    )
    _add_config(dbp)
    dbp.add_argument("action", choices=["upgrade", "status", "refresh"])
    dbp.set_defaults(func=cmd_db)
    rep = sub.add_parser(
        "report",
        help="the digest of a day on the terminal (fields: docs/metrics.md)",
        description="The digest of one local day. A day that has not begun yet in the "
        "group's timezone gets one line and exit code 2, not a report.",
        epilog="Every field of the digest and of --json is defined in docs/metrics.md.",
    )
    _add_config(rep)
    rep.add_argument("--chat", type=telegram_id, required=True, metavar="ID", help="group chat id")
    rep.add_argument(
        "--date",
        metavar="YYYY-MM-DD",
        help="local day in the group's timezone, up to today (default: yesterday)",
    )
    rep.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (its fields: docs/metrics.md, section 'The daily digest')",
    )
    rep.set_defaults(func=cmd_report)

    imp = sub.add_parser("import", help="back-fill from a Telegram Desktop export (result.json)")
    _add_config(imp)
    imp.add_argument("file", metavar="FILE", help="result.json from Telegram Desktop")
    imp.add_argument(
        "--chat-id",
        type=telegram_id,
        metavar="ID",
        help="Bot API group id to file it under, negative (default: from the export)",
    )
    imp.add_argument(
        "--export-timezone",
        metavar="ZONE",
        help="timezone of the exporting computer (needed for exports without "
        "date_unixtime, made before 2021)",
    )
    imp.add_argument(
        "--host",
        type=telegram_id,
        action="append",
        default=[],
        metavar="ID",
        help="a host's user id (repeatable): exports have no admin list",
    )
    imp.add_argument(
        "--bot",
        type=telegram_id,
        action="append",
        default=[],
        metavar="ID",
        help="a bot's user id (repeatable): exports have no bot flag",
    )
    imp.add_argument(
        "--linked-channel",
        type=_channel_id,
        metavar="ID",
        help="the group's linked channel: its Bot API id (-100…) or the export's id "
        "(123 or channel123). Default: the one the bot already knows for the group, else "
        "the channel whose automatic forwards the export shows",
    )
    imp.set_defaults(func=cmd_import)

    from bot.cli_offline import add_offline_commands

    add_offline_commands(sub, _add_config)
    from bot.check import add_check_command

    add_check_command(sub, _add_config)
    from bot.cli_dashboard import add_dashboard_command

    add_dashboard_command(sub, _add_config)
    from bot.cli_insights import add_insights_command

    add_insights_command(sub, _add_config)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("opsbot")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def cmd_report(args: argparse.Namespace, config: Config) -> int:
    import json
    from datetime import UTC, datetime, timedelta

    from bot import metrics, reports, service
    from storage import db
    from storage.repo import Repo

    day = None if args.date is None else parse_day(args.date)

    async def main() -> int:
        repo = Repo(await db.open_engine(config.storage_url, create=False))
        try:
            chat_id = await repo.resolve_chat_id(args.chat)
            info = await repo.chat(chat_id)
            if info is None:
                print(
                    f"opsbot: no group {args.chat} in the database at [storage] url"
                    " (opsbot chats lists them)",
                    file=sys.stderr,
                )
                return 1
            now = datetime.now(UTC)
            settings = await service.group_settings(repo, config, chat_id)
            today = metrics.local_day(now, settings.tz)
            if day is not None and day > today:
                raise CommandError(
                    f"--date {day}: that day has not begun yet in {settings.timezone} "
                    f"(today is {today}): give today or an earlier day"
                )
            target_day = day or today - timedelta(days=1)
            result = await service.digest(repo, config, chat_id, target_day, now)
        finally:
            await repo.close()
        if args.json:
            print(json.dumps(result.report, ensure_ascii=False))
        else:
            print(
                reports.digest_text(
                    result.report,
                    settings.language,
                    info.title or str(chat_id),
                    result.net,
                    result.changes,
                    top_source=result.top_source,
                )
            )
        return 0

    return asyncio.run(main())


def parse_day(text: str) -> date:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--date: expected YYYY-MM-DD, got {text[:40]!r}") from None
    if day < TELEGRAM_EPOCH:
        raise CommandError(f"--date {day}: expected a day from {TELEGRAM_EPOCH} on")
    return day


def _channel_id(text: str) -> int:
    from bot.importer import linked_channel_id

    try:
        return linked_channel_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_import(args: argparse.Namespace, config: Config) -> int:
    from pathlib import Path

    from bot.importer import Clock, ExportError, ExportFile, import_export
    from storage import db
    from storage.repo import Repo

    if args.chat_id is not None and args.chat_id >= 0:
        raise CommandError(
            f"--chat-id {args.chat_id}: not a group: group ids are negative "
            "(-100… for supergroups); opsbot chats lists the groups in the database"
        )

    async def main() -> list[str]:
        ExportFile(Path(args.file))  # an unreadable file is refused before a database is made
        Clock(args.export_timezone)  # so is an unknown --export-timezone
        repo = Repo(await db.open_engine(config.storage_url, create=True))
        try:
            summaries = await import_export(
                repo,
                config,
                Path(args.file),
                chat_id=args.chat_id,
                export_tz=args.export_timezone,
                hosts=args.host,
                bots=args.bot,
                linked_channel=args.linked_channel,
            )
        finally:
            await repo.close()
        return [s.text() for s in summaries]

    try:
        texts = asyncio.run(main())
    except ExportError as exc:
        print(f"opsbot: import failed, nothing was changed: {exc}", file=sys.stderr)
        return 2
    print("\n\n".join(texts))
    return 0


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

    from bot.app import StartupError

    try:
        asyncio.run(main())
    except StartupError as exc:
        print(f"opsbot: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_db(args: argparse.Namespace, config: Config) -> int:
    from storage import db

    if args.action == "refresh":
        kept = asyncio.run(_refresh(config))
        print(f"daily rollups: {kept:,} days kept")
        return 0

    async def main() -> str | None:
        upgrade = args.action == "upgrade"
        engine = await db.open_engine(config.storage_url, create=upgrade, upgrade_schema=upgrade)
        try:
            return await db.current_revision(engine)
        finally:
            await engine.dispose()

    revision = asyncio.run(main())
    print(f"schema revision: {revision or 'none (run: opsbot db upgrade)'}")
    return 0


async def _refresh(config: Config) -> int:
    """Every tracked group's days from its first tracked day to today through the report
    service, which keeps them; returns how many final days are kept."""
    from datetime import UTC, datetime

    from bot import metrics, service
    from storage import db
    from storage.repo import Repo

    repo = Repo(await db.open_engine(config.storage_url, create=False))
    try:
        now = datetime.now(UTC)
        for chat_id in await repo.chat_ids(active_only=False):
            info = await repo.chat(chat_id)
            if info is None or info.migrated_to_chat_id is not None:
                continue
            start = info.tracking_start_utc
            if start is None:
                continue
            tz = (await service.group_settings(repo, config, chat_id)).tz
            first, today = metrics.local_day(start, tz), metrics.local_day(now, tz)
            await service.load_group(repo, config, chat_id, first, today, now=now)
        return await repo.final_rollup_days()
    finally:
        await repo.close()


def database_failure(url: str, exc: Exception) -> str | None:
    """One line for an error that comes from the database, else None."""
    from sqlalchemy.exc import DBAPIError

    from storage import db

    from_db = isinstance(exc, DBAPIError | ModuleNotFoundError) or (
        url.startswith("postgresql") and isinstance(exc, OSError)  # asyncpg's socket
    )
    return db.explain(url, exc) if from_db else None


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
    except (OSError, UnicodeDecodeError) as exc:  # a folder, no permission, not UTF-8
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        print(
            f"opsbot: config error: cannot read the config file {config_path(args.config)}"
            f" ({reason}; --config / OPSBOT_CONFIG)",
            file=sys.stderr,
        )
        return 2
    from bot.config import token_file_warning

    warning = token_file_warning(config)
    if warning:
        print(f"opsbot: {warning}", file=sys.stderr)
    func: Callable[[argparse.Namespace, Config], int] = args.func
    from storage.db import StorageError

    try:
        return func(args, config)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `opsbot demo | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (CommandError, StorageError) as exc:
        print(f"opsbot: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # last resort: a bug; never a traceback, never a secret
        if os.environ.get("OPSBOT_DEBUG"):
            raise
        message = database_failure(config.storage_url, exc)
        if message is not None:  # the database failed after it was opened (or in `run`)
            print(f"opsbot: {message}", file=sys.stderr)
            return 2
        print(
            f"opsbot: {args.command} failed: unexpected {type(exc).__name__} "
            "(set OPSBOT_DEBUG=1 to see where; please report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
