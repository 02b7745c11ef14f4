"""Offline subcommands: `opsbot export`, `opsbot chats`, `opsbot demo`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.cli import CommandError, telegram_id
from bot.config import Config, replace_storage


def add_offline_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    add_config: Callable[[argparse.ArgumentParser], None],
) -> None:
    exp = sub.add_parser(
        "export",
        help="CSV files of daily metrics and membership events",
        description="Two CSV files: one row per local day since tracking began (at most "
        "--days), today's marked partial=yes because it is not over; and the membership "
        "events of those days.",
        epilog="The columns are the numbers defined in docs/metrics.md.",
    )
    add_config(exp)
    exp.add_argument("--chat", type=telegram_id, required=True, metavar="ID", help="group chat id")
    exp.add_argument(
        "--days", type=int, default=30, metavar="N", help=f"last N days, 1 to {MAX_DAYS} (30)"
    )
    exp.add_argument(
        "--out", default=".", metavar="DIR", help="output folder, in an existing folder (.)"
    )
    exp.set_defaults(func=cmd_export)

    chats = sub.add_parser("chats", help="the groups in the database and their periods")
    add_config(chats)
    chats.set_defaults(func=cmd_chats)

    demo = sub.add_parser(
        "demo",
        help="build a synthetic group up to now, import it, print yesterday's digest and tables",
        epilog="What every number means: docs/metrics.md",
    )
    add_config(demo)
    demo.add_argument(
        "--out",
        default="opsbot-demo",
        metavar="DIR",
        help="folder for the export, the SQLite file and the chart, in an existing "
        "folder (opsbot-demo)",
    )
    demo.add_argument(
        "--serve", action="store_true", help="then serve the dashboard on it (Ctrl-C stops)"
    )
    demo.add_argument(
        "--port", type=int, default=8080, metavar="N", help="the dashboard's port (8080)"
    )
    demo.set_defaults(func=cmd_demo)


def cmd_export(args: argparse.Namespace, config: Config) -> int:
    from bot import exporting
    from storage import db
    from storage.repo import Repo

    if not 1 <= args.days <= MAX_DAYS:
        raise CommandError(f"--days: expected 1 to {MAX_DAYS}, got {args.days}")
    out = out_folder(args.out)

    async def main() -> dict[str, bytes] | None:
        repo = Repo(await db.open_engine(config.storage_url, create=False))
        try:
            chat_id = await repo.resolve_chat_id(args.chat)
            if await repo.chat(chat_id) is None:
                return None
            return await exporting.export_files(
                repo, config, chat_id, args.days, datetime.now(UTC)
            )
        finally:
            await repo.close()

    files = asyncio.run(main())
    if files is None:
        print(
            f"opsbot: no group {args.chat} in the database (opsbot chats lists them)",
            file=sys.stderr,
        )
        return 1
    with writing(out):
        out.mkdir(exist_ok=True)
        for name, data in files.items():
            (out / name).write_bytes(data)
            print(out / name)
    return 0


MAX_DAYS = 3660


def out_folder(text: str) -> Path:
    """--out DIR: an existing folder, or a new one in an existing folder (a typo in a
    parent is refused, not silently created). Nothing is written yet."""
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out}: is a file, not a folder: give a folder")
    if not out.exists() and not out.parent.is_dir():
        raise CommandError(f"--out {out}: {out.parent} is not an existing folder: create it first")
    return out


@contextmanager
def writing(out: Path) -> Iterator[None]:
    """Files written under --out: a failure (permissions, a full disk) is one line."""
    try:
        yield
    except OSError as exc:
        where = exc.filename or out
        raise CommandError(
            f"--out {out}: cannot write {where}: {exc.strerror or type(exc).__name__}"
        ) from exc


def cmd_chats(args: argparse.Namespace, config: Config) -> int:
    from storage import db
    from storage.repo import Repo

    async def main() -> int:
        repo = Repo(await db.open_engine(config.storage_url, create=False))
        try:
            rows = await repo.chat_periods()
        finally:
            await repo.close()
        if not rows:
            print("no groups yet (run the bot, or opsbot import FILE)")
        for chat_id, title, first, last, n_events in rows:
            period = f"{first:%Y-%m-%d} .. {last:%Y-%m-%d}" if first and last else "no events"
            print(f"{chat_id}  {title or ''}  {period}  ({n_events} membership events)")
        return 0

    return asyncio.run(main())


def cmd_demo(args: argparse.Namespace, config: Config) -> int:
    """The README's first command: the product working, with no token and no server."""
    if args.serve and not 0 < args.port < 65536:
        print("opsbot: --port: expected a port number (1 to 65535)", file=sys.stderr)
        return 2
    out = out_folder(args.out)
    with writing(out):
        code = _demo(out, config)
    if code == 0 and args.serve:
        from bot.cli_dashboard import serve_demo

        return serve_demo(config, out / "demo.db", args.port)
    return code


def _demo(out: Path, config: Config) -> int:
    from bot import charts, importer, reports, service, synthetic
    from storage import db
    from storage.repo import Repo

    out.mkdir(exist_ok=True)
    db_path = out / "demo.db"
    for stale in out.glob("demo.db*"):
        stale.unlink()
    now = datetime.now(UTC)
    tz = config.defaults.tz
    today = now.astimezone(tz).date()
    # 30 full days, then today up to this moment: yesterday is a whole day
    spec = synthetic.GroupSpec(
        start=today - timedelta(days=30), days=31, timezone=str(tz), until=now
    )
    export = out / "result.json"
    n = synthetic.write_export(spec, export)
    config = replace_storage(config, f"sqlite+aiosqlite:///{db_path.resolve()}")
    chat_id = int(f"-100{spec.chat_id}")
    hosts = [synthetic.HOST_BASE_ID + i for i in range(spec.hosts)]
    print(f"1. wrote a synthetic Telegram Desktop export: {export} ({n} items, up to now)")
    (out / "config.toml").write_text(f'[storage]\nurl = "sqlite:///{db_path.resolve()}"\n')

    async def main() -> None:
        repo = Repo(await db.open_engine(config.storage_url, create=True))
        try:
            await importer.import_export(repo, config, export, hosts=hosts)
            print(f"2. imported it into {db_path}\n")
            # example targets, as an owner would set them with /settarget
            await repo.set_chat_target(chat_id, "retention_day1", 0.8, None, 0, now)
            await repo.set_chat_target(chat_id, "response_rate", 0.2, "last 7", 0, now)
            settings = await service.group_settings(repo, config, chat_id)
            lang, last_day = settings.language, today - timedelta(days=1)
            result = await service.digest(repo, config, chat_id, last_day, now)
            clock = f"{settings.digest_time:%H:%M}"
            print(f"— Yesterday's digest, {last_day} (what the bot posts at {clock}) —")
            print(
                reports.digest_text(
                    result.report,
                    lang,
                    spec.title,
                    result.net,
                    result.changes,
                    top_source=result.top_source,
                )
            )
            rows, _ = await service.retention_rows(repo, config, chat_id, 14, now)
            print(
                "\n— Retention by join day, last 14 days (/retention 14); "
                "today's joins are still pending —"
            )
            print(reports.retention_table(rows, settings.windows, lang, settings.timezone))
            active = await service.active_rows(repo, config, chat_id, 7, now)
            print("\n— Active members per day, last 7 days (/active 7); today is partial —")
            print(reports.active_table(active, lang, settings.timezone))
            series, target = await service.metric_series(
                repo, config, chat_id, "retention_day1", 30, now
            )
            chart = out / "trend_retention_day1.png"
            chart.write_bytes(charts.trend_png("retention_day1", series, target, lang, spec.title))
            print(f"\n3. trend chart (/trend retention_day1 30): {chart}")
            print(f"   more: opsbot report --chat {chat_id} --json --config {out / 'config.toml'}")
            print("   what every number means: docs/metrics.md")
        finally:
            await repo.close()

    asyncio.run(main())
    return 0
