"""Webhook mode that answers Telegram 200 only after the update's rows are committed.

PTB's built-in webhook server acknowledges an update as soon as it is queued. Here the
handlers run first (requests arriving together are stored in one transaction): 200 when
they are done, 503 when the database was unavailable, so Telegram delivers the update
again later (and idempotent storage stores it once). Several processes can serve one URL
behind a load balancer on one PostgreSQL database.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from telegram import Update
from telegram.ext import Application
from tornado.httpserver import HTTPServer
from tornado.web import Application as TornadoApp
from tornado.web import RequestHandler

from bot.ingest import GroupCommit

log = logging.getLogger(__name__)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class _UpdateHandler(RequestHandler):
    def initialize(
        self, bot_app: Application[Any, Any, Any, Any, Any, Any], secret: str, commit: GroupCommit
    ) -> None:
        self.application_ = bot_app
        self.secret = secret
        self.commit = commit

    async def post(self) -> None:
        given = self.request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given, self.secret):
            self.set_status(403)
            return
        try:
            data = json.loads(self.request.body)
            update = Update.de_json(data, self.application_.bot)
        except (ValueError, TypeError, KeyError):
            self.set_status(400)
            return
        # 503: Telegram sends it again later (GroupCommit logs the outage once)
        self.set_status(200 if await self.commit.submit(update) else 503)


def start_webhook_server(
    application: Application[Any, Any, Any, Any, Any, Any], listen: str, port: int, secret: str
) -> HTTPServer:
    commit = GroupCommit(application)
    app = TornadoApp(
        [
            (
                r"/telegram",
                _UpdateHandler,
                {"bot_app": application, "secret": secret, "commit": commit},
            )
        ]
    )
    server = HTTPServer(app)
    server.listen(port, address=listen)
    return server
