"""`opsbot insights`: the growth numbers of a group over local days (SPEC 12)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bot.config import Config

DEFAULT_DAYS = 30
MAX_DAYS = 3660


def add_insights_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    add_config: Callable[[argparse.ArgumentParser], None],
) -> None:
    ins = sub.add_parser(
        "insights",
        help="where newcomers come from, who brings them, the newcomer funnel, best hours, "
        "quiet newcomers",
        epilog="Every number is defined in docs/metrics.md, section 'Growth numbers'.",
    )
    add_config(ins)
    from bot.cli import telegram_id

    ins.add_argument("--chat", type=telegram_id, required=True, metavar="ID", help="group chat id")
    ins.add_argument("--from", dest="day_from", metavar="YYYY-MM-DD", help="first local day")
    ins.add_argument("--to", dest="day_to", metavar="YYYY-MM-DD", help="last local day")
    ins.add_argument(
        "--days",
        metavar="N",
        help=f"the last N local days ending yesterday (default {DEFAULT_DAYS})",
    )
    ins.add_argument("--json", action="store_true", help="print one JSON object")
    ins.set_defaults(func=cmd_insights)


def _day(value: str, flag: str) -> date:
    from bot.cli import TELEGRAM_EPOCH, CommandError

    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{flag}: expected YYYY-MM-DD, got {value[:40]!r}") from None
    if day < TELEGRAM_EPOCH:
        raise CommandError(f"{flag} {day}: expected a day from {TELEGRAM_EPOCH} on")
    return day


def parse_span(
    day_from: str | None, day_to: str | None, days: str | None
) -> tuple[date, date] | int:
    """(A, B) from --from/--to, or the number of days ending yesterday (--days, default)."""
    from bot.cli import CommandError

    if days is not None and (day_from is not None or day_to is not None):
        raise CommandError("--days: give either --days N or --from A --to B, not both")
    if (day_from is None) != (day_to is None):
        raise CommandError("--from and --to: give both (or neither, for the last 30 days)")
    if day_from is not None and day_to is not None:
        a, b = _day(day_from, "--from"), _day(day_to, "--to")
        if a > b:
            raise CommandError(f"--from: {a} is after --to {b}")
        if (b - a).days >= MAX_DAYS:
            raise CommandError(f"--from: at most {MAX_DAYS} days")
        return a, b
    if days is None:
        return DEFAULT_DAYS
    if (
        not (days.isascii() and days.isdigit() and len(days) <= 4)
        or not 1 <= int(days) <= MAX_DAYS
    ):
        raise CommandError(
            f"--days: expected a whole number from 1 to {MAX_DAYS}, got {days[:40]!r}"
        )
    return int(days)


def cmd_insights(args: argparse.Namespace, config: Config) -> int:
    from bot import metrics, service
    from bot.cli import CommandError
    from bot.insights_service import insights_report, rounded
    from storage import db
    from storage.repo import Repo

    span = parse_span(args.day_from, args.day_to, args.days)  # CommandError: exit 2

    async def main() -> tuple[dict[str, object], str, str] | None:
        repo = Repo(await db.open_engine(config.storage_url, create=False))
        try:
            chat_id = await repo.resolve_chat_id(args.chat)
            info = await repo.chat(chat_id)
            if info is None:
                return None
            now = datetime.now(UTC)
            settings = await service.group_settings(repo, config, chat_id)
            today = metrics.local_day(now, settings.tz)
            if isinstance(span, int):
                a, b = today - timedelta(days=span), today - timedelta(days=1)
            else:
                a, b = span
            if b > today:
                raise CommandError(
                    f"--to {b}: that day has not begun yet in {settings.timezone} "
                    f"(today is {today}): give today or an earlier day"
                )
            report = await insights_report(repo, config, chat_id, a, b, now)
        finally:
            await repo.close()
        return report, settings.language, info.title or str(chat_id)

    result = asyncio.run(main())
    if result is None:
        print(
            f"opsbot: no group {args.chat} in the database at [storage] url"
            " (opsbot chats lists them)",
            file=sys.stderr,
        )
        return 1
    report, lang, title = result
    if args.json:
        print(json.dumps(rounded(report), ensure_ascii=False))
    else:
        print(insights_text(report, lang, title))
    return 0


def insights_text(report: Mapping[str, Any], lang: str, title: str) -> str:
    """The report as readable tables (zh or en)."""
    from bot.i18n import t

    out = [title_line(report, lang, title)]
    out += ["", *sources_lines(report, lang)]
    out += ["", referral_line(report, lang)]
    out += ["", *funnel_lines(report, lang)]
    out += ["", t(lang, "insights_hours"), *best_hours(report["hours"], lang)]
    out += ["", t(lang, "insights_quiet", n=len(report["quiet"]))]
    for q in report["quiet"]:
        who = q["name"] or str(q["user_id"])
        if q["username"]:
            who += f" @{q['username']}"
        out.append(f"  {q['joined']}  {who} ({q['user_id']})")
    return "\n".join(out)


# the sections, one each for the chat commands (/sources, /referrals, /funnel, /hours)


def title_line(report: Mapping[str, Any], lang: str, title: str) -> str:
    from bot.i18n import t

    return t(
        lang,
        "insights_title",
        title=title,
        start=report["from"],
        end=report["to"],
        tz=report["timezone"],
    )


def sources_lines(report: Mapping[str, Any], lang: str) -> list[str]:
    from bot.i18n import t
    from bot.reports import _columns, window_label

    sources: Sequence[Mapping[str, Any]] = report["sources"]
    windows = list(sources[0]["retention"]) if sources else []
    out = [t(lang, "insights_sources")]
    if not sources:
        return [*out, t(lang, "insights_none")]
    head = [t(lang, "insights_source"), t(lang, "table_joins")]
    head += [window_label(lang, w) for w in windows]
    head.append(t(lang, "insights_activated", days=report["activation_days"]))
    table = [head]
    for row in sources:
        cells = [row["source"], str(row["joins"])]
        for w in windows:
            c = row["retention"][w]
            cells.append(_cell(c["rate"], c["retained"], c["matured"], c["pending"]))
        a = row["activated"]
        cells.append(_cell(a["rate"], a["users"], a["matured"], a["pending"]))
        table.append(cells)
    return [*out, _columns(table)]


def referral_line(report: Mapping[str, Any], lang: str) -> str:
    from bot.i18n import t
    from bot.reports import pct

    ref = report["referral"]
    return t(
        lang,
        "insights_referral",
        joins=ref["referred_joins"],
        referrers=ref["referrers"],
        audience=ref["audience"],
        rate=pct(ref["rate"]),
    )


def funnel_lines(report: Mapping[str, Any], lang: str) -> list[str]:
    from bot.i18n import t
    from bot.reports import _columns, pct

    funnel = report["funnel"]
    steps = [
        [t(lang, f"insights_step_{s['step']}"), str(s["users"]), pct(s["share"])]
        for s in funnel["steps"]
    ]
    return [t(lang, "insights_funnel", pending=funnel["pending"]), _columns(steps)]


def _cell(rate: float | None, users: int, matured: int, pending: int) -> str:
    from bot.reports import pct

    text = pct(rate, users, matured) if matured else "—"
    return f"{text} +{pending}…" if pending else text


def best_hours(hours: Mapping[str, Any], lang: str, top: int = 3) -> list[str]:
    """The busiest cells and the cells where host posts drew the most responders."""
    from bot.i18n import t

    messages: list[list[int]] = hours["messages"]
    means: list[list[float | None]] = hours["responders_per_host_post"]
    busiest = sorted(
        ((n, d, h) for d, row in enumerate(messages) for h, n in enumerate(row) if n),
        key=lambda x: (-x[0], x[1], x[2]),
    )[:top]
    best = sorted(
        ((m, d, h) for d, row in enumerate(means) for h, m in enumerate(row) if m is not None),
        key=lambda x: (-x[0], x[1], x[2]),
    )[:top]
    day = t(lang, "insights_weekdays").split()
    return [
        t(lang, "insights_busiest")
        + (", ".join(f"{day[d]} {h:02d}:00 ({n})" for n, d, h in busiest) or "—"),
        t(lang, "insights_best_posts")
        + (", ".join(f"{day[d]} {h:02d}:00 ({m:.1f})" for m, d, h in best) or "—"),
    ]
