"""Webhook mode that answers Telegram 200 only after the update's rows are committed.

PTB's built-in webhook server acknowledges an update as soon as it is queued. Here the
handlers run first (requests arriving together are stored in one transaction): 200 when
they are done, 503 when the database was unavailable, so Telegram delivers the update
again later (and idempotent storage stores it once). An update that python-telegram-bot
cannot parse, or whose handling fails other than by the database, goes on the dead-letter
table and is answered 200, so Telegram does not send it forever. Several processes can
serve one URL behind a load balancer on one PostgreSQL database.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from telegram.ext import Application
from tornado.httpserver import HTTPServer
from tornado.web import Application as TornadoApp
from tornado.web import RequestHandler

from bot.ingest import Failure, GroupCommit, dead_letter, parse_update

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
        except ValueError:
            data = None
        update = parse_update(data, self.application_.bot)
        if update is None:  # not an update at all: nothing Telegram would send
            log.error("webhook request without an update_id refused (400)")
            self.set_status(400)
            return
        if isinstance(update, Failure):
            stored = await dead_letter(self.application_.bot_data["repo"], [update])
        else:
            stored = await self.commit.submit(update)
        # 503: Telegram sends it again later (GroupCommit logs the outage once)
        self.set_status(200 if stored else 503)


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
