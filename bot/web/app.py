"""The dashboard's Starlette app: pages, sign-in, and the routes in one list."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from bot import service
from bot.config import Config
from bot.web import api, auth
from bot.web.access import Access
from bot.web.texts import ECHARTS, names, texts
from storage import dashboard as tokens
from storage.repo import Repo

HERE = Path(__file__).parent
TEMPLATES = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"])
)


@dataclass
class WebState:
    repo: Repo
    config: Config
    access: Access
    bot_token: str | None
    limiter: auth.AttemptLimiter = field(default_factory=auth.AttemptLimiter)

    @property
    def base_url(self) -> str:
        return self.config.dashboard.base_url


def render(name: str, code: int = 200, **context: object) -> HTMLResponse:
    return HTMLResponse(TEMPLATES.get_template(name).render(echarts=ECHARTS, **context), code)


def page_lang(request: Request) -> str:
    accept = request.headers.get("accept-language", "")
    default = api.web(request).config.defaults.language
    return "zh" if accept.lower().startswith("zh") else default


async def refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, api.Refused)
    if request.url.path.startswith("/api/") or request.method == "POST":
        return JSONResponse({"error": exc.reason}, exc.status)
    lang = page_lang(request)
    return render("error.html", exc.status, t=texts(lang), lang=lang, status=exc.status)


async def chat_list(request: Request) -> Response:
    chats = await api.web(request).access.admin_chats(api.signed_in(request))
    lang = page_lang(request)
    return render("chats.html", t=texts(lang), lang=lang, chats=chats)


async def chat_page(request: Request) -> Response:
    chat_id = await api.readable_chat(request)
    state = api.web(request)
    settings = await service.group_settings(state.repo, state.config, chat_id)
    info = await state.repo.chat(chat_id)
    today = await api.local_today(request, chat_id)
    a, b = await api.span(request, chat_id, 14)
    targets = await service.targets_in_force(state.repo, settings, chat_id)
    return render(
        "chat.html",
        t=texts(settings.language),
        names=names(settings.language, settings.windows, [x.metric for x in targets]),
        lang=settings.language,
        chat_id=chat_id,
        title=(info and info.title) or str(chat_id),
        windows=list(settings.windows),
        day_from=a.isoformat(),
        day_to=b.isoformat(),
        today=today.isoformat(),
        timezone=settings.timezone,
    )


async def mini_app(request: Request) -> Response:
    """The Mini App's entry: no data, only the script that trades initData for a session."""
    lang = page_lang(request)
    return render("app.html", t=texts(lang), lang=lang)


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


async def _session_response(request: Request, user_id: int, body: Response) -> Response:
    state = api.web(request)
    secret = auth.new_secret()
    expires = int(time.time()) + auth.SESSION_TTL_S
    await tokens.store_token(
        state.repo, auth.secret_hash(secret), "session", user_id, None, expires
    )
    body.set_cookie(value=secret, **auth.cookie_args(state.base_url))
    return body


async def webapp_login(request: Request) -> Response:
    """POST the Mini App's initData: a valid one becomes a session cookie."""
    state = api.web(request)
    if not state.limiter.allow(_client(request)):
        raise api.Refused(429, "too many attempts; wait a minute")
    if not state.bot_token:
        raise api.Refused(401, "this dashboard runs without a bot token: use a login link")
    try:
        form = await request.json()
        init_data = str(form["init_data"])
        user = auth.check_init_data(init_data, state.bot_token, time.time())
    except (ValueError, KeyError, TypeError, auth.AuthError):
        raise api.Refused(401, "Telegram's signature did not check out") from None
    return await _session_response(request, user.user_id, JSONResponse({"ok": True}))


async def link_login(request: Request) -> Response:
    """A one-time login link: valid 10 minutes, used once, then a session cookie. The page
    moves on by itself: a SameSite=Strict cookie set by a redirect from another site would
    not be sent with the redirected request."""
    state = api.web(request)
    if not state.limiter.allow(_client(request)):
        raise api.Refused(429, "too many attempts; wait a minute")
    secret = request.path_params["token"]
    grant = await tokens.use_login(state.repo, auth.secret_hash(secret), int(time.time()))
    if grant is None:
        raise api.Refused(401, "this login link has expired or was already used")
    target = f"/chats/{grant.chat_id}" if grant.chat_id is not None else "/"
    lang = page_lang(request)
    body = render("moving.html", t=texts(lang), lang=lang, target=target)
    return await _session_response(request, grant.user_id, body)


ROUTES = [
    Route("/", chat_list),
    Route("/chats/{chat_id}", chat_page),
    Route("/app", mini_app),
    Route("/login/{token}", link_login),
    Route("/auth/webapp", webapp_login, methods=["POST"]),
    Route("/api/chats", api.chats),
    Route("/api/chats/{chat_id}/report", api.report),
    Route("/api/chats/{chat_id}/insights", api.insights),
    Route("/api/chats/{chat_id}/cohorts", api.cohorts),
    Route("/api/chats/{chat_id}/active", api.active),
    Route("/api/chats/{chat_id}/export.csv", api.export_csv),
    Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
]


def build_web_app(state: WebState) -> Starlette:
    app = Starlette(routes=ROUTES, exception_handlers={api.Refused: refused})
    app.state.web = state
    app.add_middleware(auth.SessionMiddleware)
    return app


async def login_link(repo: Repo, base_url: str, user_id: int, chat_id: int | None) -> str:
    """A new one-time login link for a desktop browser."""
    secret = auth.new_secret()
    expires = int(time.time()) + auth.LOGIN_TTL_S
    await tokens.store_token(repo, auth.secret_hash(secret), "login", user_id, chat_id, expires)
    await tokens.drop_expired(repo, int(time.time()))
    return f"{base_url}/login/{secret}"
