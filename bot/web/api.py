"""JSON endpoints: the same structures, from the same service functions, as
`opsbot report --json` and `opsbot insights --json`, plus the day rows the charts draw."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot import metrics, service
from bot.cli import TELEGRAM_EPOCH

if TYPE_CHECKING:
    from bot.web.app import WebState

MAX_SPAN_DAYS = 366


class Refused(Exception):
    """An answer other than 200: the status and one short reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def web(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state


def signed_in(request: Request) -> int:
    user_id: int | None = request.scope.get("user_id")
    if user_id is None:
        raise Refused(401, "not signed in: open the dashboard from the bot")
    return user_id


async def readable_chat(request: Request) -> int:
    """The path's group, when the signed-in user may read it now (403 otherwise)."""
    user_id = signed_in(request)
    try:
        chat_id = int(request.path_params["chat_id"])
    except ValueError:
        raise Refused(404, "no such group") from None
    if not await web(request).access.may_read(chat_id, user_id):
        raise Refused(403, "only the group's admins can see its dashboard")
    if await web(request).repo.chat(chat_id) is None:
        raise Refused(404, "no such group")
    return chat_id


def _day(request: Request, name: str) -> date | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise Refused(400, f"{name}: expected YYYY-MM-DD, got {value[:40]!r}") from None
    if day < TELEGRAM_EPOCH:
        raise Refused(400, f"{name}: expected a day from {TELEGRAM_EPOCH} on")
    return day


async def not_after_today(request: Request, chat_id: int, day: date, name: str) -> None:
    """As the CLI: a day that has not begun yet in the group's timezone is refused."""
    today = await local_today(request, chat_id)
    if day > today:
        raise Refused(400, f"{name}: {day} has not begun yet (today is {today})")


async def local_today(request: Request, chat_id: int) -> date:
    state = web(request)
    settings = await service.group_settings(state.repo, state.config, chat_id)
    return metrics.local_day(datetime.now(UTC), settings.tz)


async def span(
    request: Request, chat_id: int, default_days: int, *, end: int = 0
) -> tuple[date, date]:
    """?from=A&to=B, both or neither (default: `default_days` ending `end` days before today)."""
    a, b = _day(request, "from"), _day(request, "to")
    if (a is None) != (b is None):
        raise Refused(400, "from and to: give both, or neither")
    if a is None or b is None:
        b = await local_today(request, chat_id) - timedelta(days=end)
        a = b - timedelta(days=default_days - 1)
    await not_after_today(request, chat_id, b, "to")
    if a > b:
        raise Refused(400, f"from: {a} is after to {b}")
    if (b - a).days >= MAX_SPAN_DAYS:
        raise Refused(400, f"from: at most {MAX_SPAN_DAYS} days")
    return a, b


async def chats(request: Request) -> Response:
    return JSONResponse(await web(request).access.admin_chats(signed_in(request)))


async def report(request: Request) -> Response:
    """`opsbot report --json` (default: yesterday)."""
    chat_id = await readable_chat(request)
    state = web(request)
    day = _day(request, "date") or await local_today(request, chat_id) - timedelta(days=1)
    await not_after_today(request, chat_id, day, "date")
    result = await service.digest(state.repo, state.config, chat_id, day, datetime.now(UTC))
    return JSONResponse(result.report)


async def insights(request: Request) -> Response:
    """`opsbot insights --json` (default: the last 30 days ending yesterday)."""
    from bot.insights_service import insights_report, rounded

    chat_id = await readable_chat(request)
    state = web(request)
    a, b = await span(request, chat_id, 30, end=1)
    result = await insights_report(state.repo, state.config, chat_id, a, b, datetime.now(UTC))
    if not await state.access.is_admin(chat_id, signed_in(request)):
        result["quiet"] = []  # quiet newcomers are for admins only, even with public_commands
    return JSONResponse(rounded(result))


async def cohorts(request: Request) -> Response:
    """The heat-map: retention of each join day A..B at every window (default: 14 days)."""
    chat_id = await readable_chat(request)
    state = web(request)
    a, b = await span(request, chat_id, 14)
    rows = await service.cohort_rows_between(
        state.repo, state.config, chat_id, a, b, datetime.now(UTC)
    )
    settings = await service.group_settings(state.repo, state.config, chat_id)
    return JSONResponse({"windows": list(settings.windows), "rows": rows})


async def active(request: Request) -> Response:
    """Daily audience and response/interaction rates of the days A..B (default: 14 days)."""
    chat_id = await readable_chat(request)
    state = web(request)
    a, b = await span(request, chat_id, 14)
    rows = await service.active_rows_between(
        state.repo, state.config, chat_id, a, b, datetime.now(UTC)
    )
    return JSONResponse({"rows": rows})


async def export_csv(request: Request) -> Response:
    """What the page shows for A..B, one row per day."""
    chat_id = await readable_chat(request)
    state = web(request)
    a, b = await span(request, chat_id, 14)
    now = datetime.now(UTC)
    cohort = await service.cohort_rows_between(state.repo, state.config, chat_id, a, b, now)
    daily = await service.active_rows_between(state.repo, state.config, chat_id, a, b, now)
    settings = await service.group_settings(state.repo, state.config, chat_id)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["date", "joins"]
        + [f"retention_{w}" for w in settings.windows]
        + ["audience", "response_users", "response_rate", "interaction_users", "interaction_rate"]
    )
    for c, d in zip(cohort, daily, strict=True):
        cells: dict[str, dict[str, object]] = c["cells"]  # type: ignore[assignment]
        resp: dict[str, object] = d["response"]  # type: ignore[assignment]
        inter: dict[str, object] = d["interaction"]  # type: ignore[assignment]
        writer.writerow(
            [c["day"], c["joins"]]
            + [_blank(cells[w]["rate"]) for w in settings.windows]
            + [_blank(d["audience"]), resp["users"], _blank(resp["rate"])]
            + [inter["users"], _blank(inter["rate"])]
        )
    name = f"opsbot-{chat_id}-{a}-{b}.csv"
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _blank(value: object) -> object:
    return "" if value is None else value
