"""One synthetic history, two ways in: imported from its Telegram Desktop export, and fed
live through the fake Bot API server. The reports must be the same, number for number."""

from __future__ import annotations

import json
from dataclasses import replace
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
FORUM_SPEC = replace(
    SPEC, messages_per_member_day=4.0, question_share=0.3, reply_to_host_share=0.2
)
NOW = datetime(2026, 11, 16, tzinfo=UTC)
DAYS = [SPEC.start + timedelta(days=i) for i in range(SPEC.days)]
GUARD = 5_000_001  # an anti-spam bot, administrator of the forum
BOTS = {GUARD}


def user_of(item: dict[str, Any], id_key: str, name_key: str) -> dict[str, Any]:
    uid = int(str(item[id_key]).removeprefix("user"))
    return tg.user(uid, item[name_key], is_bot=uid in BOTS)


def as_updates(items: list[dict[str, Any]], forum: bool = False) -> list[dict[str, Any]]:
    """The export's history as the Bot API would have delivered it. In a forum, a message
    whose reply_to_message_id is a topic's creation is sent in that topic without the
    reply button; an explicit reply is sent in the topic of the message it replies to."""
    group = (tg.forum if forum else tg.group)(CHAT_ID, SPEC.title)
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
            elif item["action"] == "topic_created":
                update = tg.topic_created(group, item["id"], ts, who, item["title"])
                by_id[item["id"]] = update["message"]
                updates.append(update)
            continue
        sender = user_of(item, "from_id", "from")
        reply = by_id.get(item.get("reply_to_message_id", -1))
        topic = None
        if reply is not None and reply.get("is_topic_message"):
            topic = by_id[reply["message_thread_id"]]
            if reply["message_id"] == topic["message_id"]:
                reply = None  # sent in the topic, not a reply
        update = tg.message(
            group, item["id"], ts, sender, item["text"], reply_to=reply, topic=topic
        )
        by_id[item["id"]] = update["message"]
        updates.append(update)
    return updates


def as_forum(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history in a forum with two topics and an admin bot, as Telegram Desktop would
    export it: ids spaced out to make room; each message without a reply is sent in the
    General topic or a topic (its reply_to_message_id is then the topic's creation), a
    reply stays a reply (an export keeps no topic for it); the bot Guard greets in topics."""
    out, roots = [], []
    for item in items:
        item = item | {"id": item["id"] * 10}
        if "reply_to_message_id" in item:
            item["reply_to_message_id"] *= 10
        out.append(item)
        if item["type"] == "service" and item["action"] == "create_group":
            for n, title in enumerate(("Homework", "Chat"), start=1):
                root = item | {"id": item["id"] + n, "action": "topic_created", "title": title}
                del root["members"]
                roots.append(root["id"])
                out.append(root)
        elif item["type"] == "message" and "reply_to_message_id" not in item:
            where = item["id"] // 10 % 3  # 0: the General topic
            if where:
                item["reply_to_message_id"] = roots[where - 1]
                if item["id"] // 10 % 7 == 0:
                    out.append(
                        item
                        | {
                            "id": item["id"] + 5,
                            "from": "Guard",
                            "from_id": f"user{GUARD}",
                            "text": "welcome!",
                        }
                    )
    return out


async def compare(
    tmp_path: Path, db_url: str, items: list[dict[str, Any]], forum: bool = False
) -> list[dict[str, object]]:
    """Reports of every day: imported (--host, --bot) and live; asserts they are equal."""
    export = tmp_path / "result.json"
    data = json.loads(export.read_text()) | {"messages": items}
    export.write_text(json.dumps(data, ensure_ascii=False))
    creators = items[0]["members"]
    now, days = NOW, DAYS

    imported_url = f"sqlite+aiosqlite:///{tmp_path / 'imported.db'}"
    repo = await Repo.open(imported_url)
    try:
        await import_export(
            repo, Config(storage_url=imported_url), export, hosts=HOSTS, bots=sorted(BOTS)
        )
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
        if forum:
            api.chats[CHAT_ID] = tg.forum(CHAT_ID, SPEC.title)
            api.admins[CHAT_ID].append(tg.member(tg.user(GUARD, "Guard", True), "administrator"))
        # everyone in create_group (hosts included), the bot and the admin bot
        everyone = api.count_everyone(CHAT_ID, len(creators) - len(HOSTS))
        assert everyone == len(creators) + 1 + forum
        async with bot_running(make_config(api, db_url)) as app:
            api.push(*as_updates(items, forum))
            await settle(api, wait_s=60)
            live_repo: Repo = app.bot_data["repo"]
            live = [await service.day_report(live_repo, Config(), CHAT_ID, d, now) for d in days]
    finally:
        api.stop()
    assert live == imported
    return live


async def test_imported_history_reports_like_the_live_bot(tmp_path: Path, db_url: str) -> None:
    synthetic.write_export(SPEC, tmp_path / "result.json")
    items = json.loads((tmp_path / "result.json").read_text())["messages"]
    reports = await compare(tmp_path, db_url, items)
    assert reports[0]["joins"] > 0  # the history is not empty
    assert reports[1]["active"]["interaction"]["users"] > 0  # type: ignore[index]


async def test_a_forum_with_an_admin_bot_reports_like_the_live_bot(
    tmp_path: Path, db_url: str
) -> None:
    """A chattier history in a forum supergroup with topics and an admin bot: per-topic
    question windows, topic messages that are no replies, the bot left out of the
    baseline; identical reports on every day."""
    synthetic.write_export(FORUM_SPEC, tmp_path / "plain.json")
    plain = json.loads((tmp_path / "plain.json").read_text())["messages"]
    (tmp_path / "result.json").write_bytes((tmp_path / "plain.json").read_bytes())
    items = as_forum(plain)
    assert sum(i.get("from_id") == f"user{GUARD}" for i in items) > 3
    reports = await compare(tmp_path, db_url, items, forum=True)
    # the topics matter here: without them, more questions are answered
    flat_url = f"sqlite+aiosqlite:///{tmp_path / 'flat.db'}"
    repo = await Repo.open(flat_url)
    try:
        await import_export(
            repo, Config(storage_url=flat_url), tmp_path / "plain.json", hosts=HOSTS
        )
        flat = [await service.day_report(repo, Config(), CHAT_ID, d, NOW) for d in DAYS]
    finally:
        await repo.close()
    topics, no_topics = interaction(reports), interaction(flat)
    assert all(f > t for t, f in zip(topics, no_topics, strict=True)), (topics, no_topics)


def interaction(reports: list[dict[str, Any]]) -> list[int]:
    return [r["active"]["interaction"]["users"] for r in reports]
