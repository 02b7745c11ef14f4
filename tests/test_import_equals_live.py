"""One synthetic history, two ways in: imported from its Telegram Desktop export, and fed
live through the fake Bot API server. The reports must be the same, number for number.

The history has what real groups have and exports write their own way: people a host
added or removed, whom the export names only by display name (live: ids), and the linked
channel's posts (automatic forwards and posts sent as the channel, which the export does
not mark as linked), replies to them, and another channel's posts."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bot import service, synthetic
from bot.classify import CHANNEL_BOT, TELEGRAM_SERVICE
from bot.config import Config
from bot.importer import import_export
from storage.models import MessageRow
from storage.repo import Repo
from tests import export_factory as ef
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
NEWS, ADS = ("Camp News", 555), ("Deals", 999)  # the linked channel, another channel
LINKED = -100555
NAME_ONLY = 6  # at most this many people whom a host adds (and removes), named only


def renumbered(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items in time order with message ids 1, 2, … as Telegram numbers them."""
    items = sorted(items, key=lambda i: int(i["date_unixtime"]))
    new = {item["id"]: n for n, item in enumerate(items, 1)}
    for item in items:
        item["id"] = new[item["id"]]
        if "reply_to_message_id" in item:
            item["reply_to_message_id"] = new[item["reply_to_message_id"]]
    return items


def with_real_shapes(items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The synthetic history plus name-only people and channel posts; and the user id of
    each name-only person (for the live side, which sees ids)."""
    posters = {i["from_id"] for i in items if i["type"] == "message"}
    host = items[0]["actor"], items[0]["actor_id"]
    quiet = [  # people who join by link and never post: nothing shows their id but that
        i
        for i in items
        if i.get("action") == "join_group_by_link" and i["actor_id"] not in posters
    ][::2][:NAME_ONLY]
    named: dict[str, int] = {}
    for join in quiet:
        name, uid = join["actor"], join["actor_id"]
        named[name] = int(uid.removeprefix("user"))
        for item in items:
            if item is join or (
                item.get("action") == "remove_members" and item["actor_id"] == uid
            ):
                item.pop("inviter", None)
                item.pop("joiner", None)
                item.pop("leaver", None)
                item["actor"], item["actor_id"] = host
                item["members"] = [name]
                if item is join:
                    item["action"] = "invite_members"
    extra: list[dict[str, Any]] = []
    next_id = max(i["id"] for i in items) + 1
    questions = [i for i in items if i["type"] == "message" and str(i["text"]).endswith("?")]
    for n, question in enumerate(questions[::3]):
        ts = int(question["date_unixtime"])
        asker = question["from"], int(question["from_id"].removeprefix("user"))
        news = ef.chat_post(next_id, 0, f"channel{NEWS[1]}", NEWS[0], "news")
        if n % 2 == 0:  # an automatic forward, else a post sent as the channel
            news = ef.auto_forward(next_id, 0, NEWS, "news")
        extra.append(news | dates(ts + 60))
        extra.append(ef.message(next_id + 1, 0, asker, "thanks!", next_id) | dates(ts + 90))
        ad = ef.chat_post(next_id + 2, 0, f"channel{ADS[1]}", ADS[0], "50% off", next_id)
        extra.append(ad | dates(ts + 30))
        next_id += 3
    return renumbered(items + extra), named


def dates(ts: int) -> dict[str, str]:
    local = datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)
    return {"date": local.isoformat(), "date_unixtime": str(ts)}


def user_of(item: dict[str, Any], id_key: str, name_key: str) -> dict[str, Any]:
    return tg.user(int(str(item[id_key]).removeprefix("user")), item[name_key])


def as_updates(
    items: list[dict[str, Any]], named: dict[str, int] | None = None
) -> list[dict[str, Any]]:
    """The export's history as the Bot API would have delivered it (`named`: the ids of the
    people the export names only)."""
    named = named or {}
    group = tg.group(CHAT_ID, SPEC.title)
    by_id: dict[int, dict[str, Any]] = {}
    updates = []
    for item in items:
        ts = int(item["date_unixtime"])
        name = (item.get("members") or [None])[0]
        if item["type"] == "service" and name in named:  # a host added or removed them
            who = tg.user(named[name], name)
            added = item["action"] == "invite_members"
            was, now = ("left", "member") if added else ("member", "kicked")
            host = user_of(item, "actor_id", "actor")
            updates.append(
                tg.chat_member(group, host, ts, tg.member(who, was), tg.member(who, now))
            )
            continue
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
        reply = by_id.get(item.get("reply_to_message_id", -1))
        if item["from_id"].startswith("channel"):  # a channel's post
            channel = tg.channel(int(f"-100{item['from_id'].removeprefix('channel')}"))
            extra: dict[str, Any] = {"sender_chat": channel}
            if "forwarded_from" in item:
                sender = tg.user(TELEGRAM_SERVICE, "Telegram")
                extra |= {
                    "is_automatic_forward": True,
                    "forward_origin": {
                        "type": "channel",
                        "date": ts - 1,
                        "chat": channel,
                        "message_id": item["id"],
                    },
                }
            else:
                sender = tg.user(CHANNEL_BOT, "Channel", True)
            update = tg.message(
                group, item["id"], ts, sender, item["text"], reply_to=reply, **extra
            )
            by_id[item["id"]] = update["message"]
            updates.append(update)
            continue
        sender = user_of(item, "from_id", "from")
        update = tg.message(group, item["id"], ts, sender, item["text"], reply_to=reply)
        by_id[item["id"]] = update["message"]
        updates.append(update)
    return updates


async def test_imported_history_reports_like_the_live_bot(tmp_path: Path, db_url: str) -> None:
    export = tmp_path / "result.json"
    synthetic.write_export(SPEC, export)
    data = json.loads(export.read_text())
    items, named = with_real_shapes(data["messages"])
    export.write_text(json.dumps(data | {"messages": items}, ensure_ascii=False))
    creators = items[0]["members"]
    now = datetime(2026, 11, 16, tzinfo=UTC)
    days = [SPEC.start + timedelta(days=i) for i in range(SPEC.days)]

    imported_url = f"sqlite+aiosqlite:///{tmp_path / 'imported.db'}"
    repo = await Repo.open(imported_url)
    try:
        [summary] = await import_export(
            repo, Config(storage_url=imported_url), export, hosts=HOSTS
        )
        imported = [await service.day_report(repo, Config(), CHAT_ID, d, now) for d in days]
        async with repo.engine.connect() as conn:
            rows = (
                await conn.execute(select(MessageRow).where(MessageRow.chat_id == CHAT_ID))
            ).all()
    finally:
        await repo.close()
    channel_posts = {r.message_id: (r.sender_chat_id, r.role) for r in rows if r.sender_chat_id}
    assert set(channel_posts.values()) == {(LINKED, "host"), (-100999, "other")}
    # members replied to the linked channel's posts: response-active for that
    assert any(
        r.is_response and channel_posts.get(r.reply_to_message_id, (0,))[0] == LINKED for r in rows
    )

    api = FakeBotAPI().start()
    try:
        api.admins[CHAT_ID] = [
            tg.member(tg.user(h, f"Host {i}"), "creator" if i == 0 else "administrator")
            for i, h in enumerate(HOSTS)
        ]
        api.admins[CHAT_ID].append(tg.member(tg.user(BOT_ID, "opsbot", True), "administrator"))
        api.member_counts[CHAT_ID] = len(creators) + 1  # everyone in create_group + the bot
        api.chats[CHAT_ID] = tg.group(CHAT_ID, SPEC.title) | {"linked_chat_id": LINKED}
        async with bot_running(make_config(api, db_url)) as app:
            api.push(*as_updates(items, named))
            await settle(api, wait_s=60)
            live_repo: Repo = app.bot_data["repo"]
            live = [await service.day_report(live_repo, Config(), CHAT_ID, d, now) for d in days]
    finally:
        api.stop()
    assert summary.name_only == len(named) >= 3
    assert (summary.linked, summary.linked_by) == (LINKED, "forwards")
    assert imported[0]["joins"] > 0  # the history is not empty
    assert imported[1]["active"]["interaction"]["users"] > 0  # type: ignore[index]
    assert live == imported
