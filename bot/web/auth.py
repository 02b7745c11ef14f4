"""Who is asking: Mini App initData, one-time login links, sessions (pure functions), and the
one middleware that turns a request's cookie or initData into a user id."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

INIT_DATA_MAX_AGE_S = 3600  # Telegram's own advice: refuse initData older than an hour
LOGIN_TTL_S = 600
SESSION_TTL_S = 12 * 3600
COOKIE = "opsbot_session"
TMA_SCHEME = "tma "  # Authorization: tma <initData>, the Mini Apps convention


class AuthError(ValueError):
    """initData that Telegram did not sign, or signed too long ago."""


@dataclass(frozen=True, slots=True)
class WebAppUser:
    user_id: int
    language_code: str | None


def init_data_hash(fields: dict[str, str], bot_token: str) -> str:
    """HMAC-SHA256 of the data-check string (the fields but `hash`, sorted, key=value lines)
    with the key HMAC-SHA256("WebAppData", bot token), as Telegram documents it."""
    check = "\n".join(f"{k}={fields[k]}" for k in sorted(fields) if k != "hash")
    secret = hmac.new(b"WebAppData", bot_token.encode(), hashlib.sha256).digest()
    return hmac.new(secret, check.encode(), hashlib.sha256).hexdigest()


def check_init_data(init_data: str, bot_token: str, now_ts: float) -> WebAppUser:
    pairs = parse_qsl(init_data, keep_blank_values=True)
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise AuthError("a field appears twice")
    given = fields.get("hash")
    if not given:
        raise AuthError("no hash")
    if not hmac.compare_digest(init_data_hash(fields, bot_token), given):
        raise AuthError("bad signature")
    try:
        auth_date = int(fields["auth_date"])
        user = json.loads(fields["user"])
        user_id = int(user["id"])
    except (KeyError, ValueError, TypeError):
        raise AuthError("no auth_date or user") from None
    if not -60 <= now_ts - auth_date <= INIT_DATA_MAX_AGE_S:
        raise AuthError("stale")
    lang = user.get("language_code")
    return WebAppUser(user_id, lang if isinstance(lang, str) else None)


def new_secret() -> str:
    return secrets.token_urlsafe(24)


def secret_hash(secret: str) -> str:
    """What the database keeps instead of a login link's or session's secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def cookie_args(base_url: str) -> dict[str, Any]:
    return {
        "key": COOKIE,
        "max_age": SESSION_TTL_S,
        "httponly": True,
        "samesite": "strict",
        "secure": base_url.startswith("https://"),
        "path": "/",
    }


@dataclass
class AttemptLimiter:
    """At most `limit` login attempts per client address in `window_s` (failed or not)."""

    limit: int = 20
    window_s: float = 60.0
    seen: dict[str, deque[float]] = field(default_factory=dict)

    def allow(self, client: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        times = self.seen.setdefault(client, deque())
        while times and now - times[0] > self.window_s:
            times.popleft()
        if len(times) >= self.limit:
            return False
        times.append(now)
        if len(self.seen) > 10_000:  # forget quiet clients
            self.seen = {k: v for k, v in self.seen.items() if v}
        return True


class SessionMiddleware:
    """Sets scope["user_id"] from the session cookie, or from `Authorization: tma <initData>`
    (checked against the bot token); None when neither is valid."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope["user_id"] = await self.user_of(Request(scope))
        await self.app(scope, receive, send)

    async def user_of(self, request: Request) -> int | None:
        from storage.dashboard import session_user

        web = request.app.state.web
        header = request.headers.get("authorization", "")
        if header.startswith(TMA_SCHEME) and web.bot_token:
            try:
                return check_init_data(
                    header[len(TMA_SCHEME) :], web.bot_token, time.time()
                ).user_id
            except AuthError:
                return None
        secret = request.cookies.get(COOKIE)
        if not secret:
            return None
        return await session_user(web.repo, secret_hash(secret), int(time.time()))
