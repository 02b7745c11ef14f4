"""One synthetic history, two ways in: imported from its Telegram Desktop export, and fed
live through the fake Bot API server. The reports must be the same, number for number."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bot import service, synthetic
from bot.config import Config
from bot.importer import import_export
from storage.repo import Repo
from tests import tg
from tests.botapi_server import BOT_ID, FakeBotAPI
from tests.e2e import bot_running, make_config, settle

SPEC = synthetic.GroupSpec(
    seed=3,
    days=4,
    start=date(2026, 11, 10),
    initial_members=25,
    joins_per_day=10,
    messages_per_member_day=1.2,
)
CHAT_ID = int(f"-100{SPEC.chat_id}")
HOSTS = [synthetic.HOST_BASE_ID + i for i in range(SPEC.hosts)]


def user_of(item: dict[str, Any], id_key: str, name_key: str) -> dict[str, Any]:
    return tg.user(int(str(item[id_key]).removeprefix("user")), item[name_key])


def as_updates(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The export's history as the Bot API would have delivered it."""
    group = tg.group(CHAT_ID, SPEC.title)
    by_id: dict[int, dict[str, Any]] = {}
    updates = []
    for item in items:
        ts = int(item["date_unixtime"])
        if item["type"] == "service":
            who = user_of(item, "actor_id", "actor")
            if item["action"] == "create_group":
                bot = tg.user(BOT_ID, "opsbot", True)
                updates.append(
                    tg.chat_member(
                        group,
                        who,
                        ts,
                        tg.member(bot, "left"),
                        tg.member(bot, "administrator"),
                        mine=True,
                    )
                )
            elif item["action"] == "join_group_by_link":
                updates.append(
                    tg.chat_member(
                        group, who, ts, tg.member(who, "left"), tg.member(who, "member")
                    )
                )
            elif item["action"] == "remove_members":
                updates.append(
                    tg.chat_member(
                        group, who, ts, tg.member(who, "member"), tg.member(who, "left")
                    )
                )
            continue
        sender = user_of(item, "from_id", "from")
        reply = by_id.get(item.get("reply_to_message_id", -1))
        update = tg.message(group, item["id"], ts, sender, item["text"], reply_to=reply)
        by_id[item["id"]] = update["message"]
        updates.append(update)
    return updates


async def test_imported_history_reports_like_the_live_bot(tmp_path: Path, db_url: str) -> None:
    export = tmp_path / "result.json"
    synthetic.write_export(SPEC, export)
    items = json.loads(export.read_text())["messages"]
    creators = items[0]["members"]
    now = datetime(2026, 11, 16, tzinfo=UTC)
    days = [SPEC.start + timedelta(days=i) for i in range(SPEC.days)]

    imported_url = f"sqlite+aiosqlite:///{tmp_path / 'imported.db'}"
    repo = await Repo.open(imported_url)
    try:
        await import_export(repo, Config(storage_url=imported_url), export, hosts=HOSTS)
        imported = [await service.day_report(repo, Config(), CHAT_ID, d, now) for d in days]
    finally:
        await repo.close()

    api = FakeBotAPI().start()
    try:
        api.admins[CHAT_ID] = [
            tg.member(tg.user(h, f"Host {i}"), "creator" if i == 0 else "administrator")
            for i, h in enumerate(HOSTS)
        ]
        api.admins[CHAT_ID].append(tg.member(tg.user(BOT_ID, "opsbot", True), "administrator"))
        api.member_counts[CHAT_ID] = len(creators) + 1  # everyone in create_group + the bot
        async with bot_running(make_config(api, db_url)) as app:
            api.push(*as_updates(items))
            await settle(api, wait_s=60)
            live_repo: Repo = app.bot_data["repo"]
            live = [await service.day_report(live_repo, Config(), CHAT_ID, d, now) for d in days]
    finally:
        api.stop()
    assert imported[0]["joins"] > 0  # the history is not empty
    assert imported[1]["active"]["interaction"]["users"] > 0  # type: ignore[index]
    assert live == imported
