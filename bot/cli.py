"""`opsbot run | db | report | import | export | demo` — the command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
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
        epilog="What every number means, with worked examples: docs/metrics.md",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the bot (long polling, or webhook per config)")
    _add_config(run)
    run.set_defaults(func=cmd_run)

    dbp = sub.add_parser("db", help="database schema: upgrade to the latest version, or status")
    _add_config(dbp)
    dbp.add_argument("action", choices=["upgrade", "status"])
    dbp.set_defaults(func=cmd_db)
    rep = sub.add_parser(
        "report",
        help="the digest of a day on the terminal (fields: docs/metrics.md)",
        epilog="Every field of the digest and of --json is defined in docs/metrics.md.",
    )
    _add_config(rep)
    rep.add_argument("--chat", type=int, required=True, metavar="ID", help="group chat id")
    rep.add_argument(
        "--date",
        metavar="YYYY-MM-DD",
        help="local day in the group's timezone (default: yesterday)",
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
        type=int,
        metavar="ID",
        help="Bot API chat id to file it under (default: from the export)",
    )
    imp.add_argument(
        "--export-timezone",
        metavar="ZONE",
        help="timezone of the exporting computer (needed for exports without "
        "date_unixtime, made before 2021)",
    )
    imp.add_argument(
        "--host",
        type=int,
        action="append",
        default=[],
        metavar="ID",
        help="a host's user id (repeatable): exports have no admin list",
    )
    imp.add_argument(
        "--bot",
        type=int,
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
    from bot.cli_dashboard import add_dashboard_command

    add_dashboard_command(sub, _add_config)
    from bot.cli_insights import add_insights_command

    add_insights_command(sub, _add_config)
    return parser


def cmd_report(args: argparse.Namespace, config: Config) -> int:
    import json
    from datetime import UTC, date, datetime, timedelta

    from bot import metrics, reports, service
    from storage.repo import Repo

    if args.date is not None:
        try:
            day: date | None = date.fromisoformat(args.date)
        except ValueError:
            print(f"opsbot: --date: expected YYYY-MM-DD, got {args.date!r}", file=sys.stderr)
            return 2
    else:
        day = None

    async def main() -> int:
        repo = await Repo.open(config.storage_url)
        try:
            chat_id = await repo.resolve_chat_id(args.chat)
            info = await repo.chat(chat_id)
            if info is None:
                print(
                    f"opsbot: no group {args.chat} in {config.storage_url.split('///')[-1]}"
                    " (opsbot chats lists them)",
                    file=sys.stderr,
                )
                return 1
            now = datetime.now(UTC)
            settings = await service.group_settings(repo, config, chat_id)
            target_day = day or metrics.local_day(now, settings.tz) - timedelta(days=1)
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
                )
            )
        return 0

    return asyncio.run(main())


def _channel_id(text: str) -> int:
    from bot.importer import linked_channel_id

    try:
        return linked_channel_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_import(args: argparse.Namespace, config: Config) -> int:
    from pathlib import Path

    from bot.importer import ExportError, import_export
    from storage.repo import Repo

    async def main() -> list[str]:
        repo = await Repo.open(config.storage_url)
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
    from bot.config import token_file_warning

    warning = token_file_warning(config)
    if warning:
        print(f"opsbot: {warning}", file=sys.stderr)
    func: Callable[[argparse.Namespace, Config], int] = args.func
    try:
        return func(args, config)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `opsbot demo | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
