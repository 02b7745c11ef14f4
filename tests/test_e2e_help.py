"""/help through the real Application: it points to the metric definitions in the project."""

from __future__ import annotations

from tests import tg
from tests.botapi_server import FakeBotAPI
from tests.e2e import bot_running, make_config, settle

OWNER = 31


async def test_help_points_to_the_metrics_doc(db_url: str) -> None:
    server = FakeBotAPI().start()
    chat = {"id": OWNER, "type": "private", "first_name": "Owner"}
    command = [{"type": "bot_command", "offset": 0, "length": 5}]
    try:
        async with bot_running(make_config(server, db_url, language="en")):
            server.push(
                tg.message(
                    chat, 1, 1_700_000_000, tg.user(OWNER, "Owner"), "/help", entities=command
                )
            )
            await settle(server)
        [reply] = [
            c.params["text"]
            for c in server.calls_of("sendMessage")
            if int(c.params["chat_id"]) == OWNER
        ]
    finally:
        server.stop()
    assert (
        reply.splitlines()[-1]
        == "What every number means: docs/metrics.md in the opsbot repository"
    )
    assert "SPEC" not in reply
