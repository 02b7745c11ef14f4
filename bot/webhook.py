"""Webhook mode that answers Telegram 200 only after the update's rows are committed.

PTB's built-in webhook server acknowledges an update as soon as it is queued. Here the
handlers run first: 200 when they are done, 503 when the database was unavailable, so
Telegram delivers the update again later (and idempotent storage stores it once). Several
processes can serve one URL behind a load balancer on one PostgreSQL database.
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

from bot.ingest import handled

log = logging.getLogger(__name__)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class _UpdateHandler(RequestHandler):
    def initialize(self, bot_app: Application[Any, Any, Any, Any, Any, Any], secret: str) -> None:
        self.application_ = bot_app
        self.secret = secret

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
        if await handled(self.application_, update):
            self.set_status(200)
        else:
            log.warning(
                "database unavailable: update %s refused, Telegram will resend it",
                update.update_id,
            )
            self.set_status(503)


def start_webhook_server(
    application: Application[Any, Any, Any, Any, Any, Any], listen: str, port: int, secret: str
) -> HTTPServer:
    app = TornadoApp([(r"/telegram", _UpdateHandler, {"bot_app": application, "secret": secret})])
    server = HTTPServer(app)
    server.listen(port, address=listen)
    return server
