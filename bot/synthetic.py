"""Realistic synthetic groups, written as Telegram Desktop exports (demo and benchmarks).

Joins arrive through the day with an evening peak, newcomers churn on a decaying curve,
hosts post prompts that members answer, members reply to each other and answer questions
without the reply button. Deterministic for a given seed; streamed to disk day by day, so
a 1 GB export needs little memory. With `until`, the history stops at that instant (the
demo passes the moment it runs, so yesterday is a full day and today is a partial one).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

QUESTIONS = (
    "这个作业怎么提交？",
    "今天的直播有回放吗",
    "How do I join the call?",
    "有没有人一起打卡？",
    "What time is the next session?",
    "为什么我看不到课件？",
)
ANSWERS = (
    "在群公告里有链接",
    "有的，晚上发",
    "Check the pinned message",
    "我也想知道",
    "+1",
    "可以的",
    "Same here",
)
PROMPTS = (
    "今天的打卡任务：分享一个你的收获",
    "Day {d} homework is up, reply with your answer",
    "大家今天学到了什么？",
    "Quick poll: reply 1 if you finished the lesson",
)
CHATTER = ("早上好", "收到", "谢谢老师", "Good morning!", "👍", "今天好累", "打卡 ✅")


@dataclass(frozen=True, slots=True)
class GroupSpec:
    seed: int = 7
    days: int = 30
    start: date = date(2026, 10, 25)
    timezone: str = "Asia/Shanghai"
    chat_id: int = 1987654321  # the export's id; the Bot API id is -100 + this
    title: str = "AI 训练营 · Demo"
    initial_members: int = 120
    joins_per_day: float = 18.0
    hosts: int = 2
    prompts_per_day: int = 3
    messages_per_member_day: float = 0.6
    reply_to_host_share: float = 0.35
    question_share: float = 0.08
    until: datetime | None = None  # nothing at or after this instant (UTC); None: every day


HOST_BASE_ID = 5_000_000_000
MEMBER_BASE_ID = 6_000_000_000


def _churn_delay_s(rng: random.Random) -> float | None:
    """Seconds until a newcomer leaves, or None if they stay (a decaying hazard)."""
    r = rng.random()
    if r < 0.06:
        return rng.uniform(60, 3600)  # left within the first hour
    if r < 0.14:
        return rng.uniform(3600, 16 * 3600)  # later the same day, roughly
    if r < 0.22:
        return rng.uniform(16 * 3600, 48 * 3600)  # the next day
    if r < 0.34:
        return rng.expovariate(1 / (10 * 86400)) + 2 * 86400
    return None


def _day_seconds(rng: random.Random) -> float:
    """A time of day (seconds), busier in the evening."""
    hour = rng.choices(
        range(24),
        weights=[1, 1, 1, 1, 1, 1, 2, 3, 4, 5, 5, 5, 6, 5, 5, 5, 5, 6, 7, 9, 10, 9, 6, 3],
    )[0]
    return hour * 3600 + rng.uniform(0, 3600)


class _Builder:
    def __init__(self, spec: GroupSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.tz = ZoneInfo(spec.timezone)
        self.next_user = MEMBER_BASE_ID
        self.present: list[int] = []
        self.present_set: set[int] = set()
        self.leaves_at: dict[int, float] = {}
        self.hosts = [HOST_BASE_ID + i for i in range(spec.hosts)]

    @staticmethod
    def name(uid: int) -> str:
        if uid >= MEMBER_BASE_ID:
            return f"Member {uid - MEMBER_BASE_ID}"
        return f"Host {uid - HOST_BASE_ID}"

    def new_member(self) -> int:
        uid = self.next_user
        self.next_user += 1
        return uid

    def add(self, uid: int) -> None:
        if uid not in self.present_set:
            self.present_set.add(uid)
            self.present.append(uid)

    def remove(self, uid: int) -> None:
        if uid in self.present_set:
            self.present_set.discard(uid)
            self.present.remove(uid)

    def day_start(self, day: date) -> float:
        return datetime.combine(day, datetime.min.time(), self.tz).timestamp()


def _service(ts: float, actor: int, action: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "service",
        "ts": ts,
        "actor": _Builder.name(actor),
        "actor_id": f"user{actor}",
        "action": action,
        **extra,
    }


def _message(ts: float, sender: int, text: str, reply_to: int | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "message",
        "ts": ts,
        "from": _Builder.name(sender),
        "from_id": f"user{sender}",
        "text": text,
    }
    if reply_to is not None:
        item["reply_to_message_id"] = reply_to
    return item


def _day_items(b: _Builder, day_index: int) -> list[dict[str, Any]]:
    """Every event of one local day, unsorted; times are unix seconds in `ts`."""
    spec, rng = b.spec, b.rng
    start = b.day_start(spec.start + timedelta(days=day_index))
    end = b.day_start(spec.start + timedelta(days=day_index + 1))
    items: list[dict[str, Any]] = []
    joins = int(rng.gauss(spec.joins_per_day, math.sqrt(spec.joins_per_day)))
    for _ in range(max(0, joins)):
        uid, ts = b.new_member(), start + _day_seconds(rng) * (end - start) / 86400
        items.append(_service(ts, uid, "join_group_by_link", inviter="Group", joiner=uid))
        delay = _churn_delay_s(rng)
        if delay is not None:
            b.leaves_at[uid] = ts + delay
    for uid, ts in list(b.leaves_at.items()):
        if start <= ts < end:
            items.append(
                _service(ts, uid, "remove_members", members=[_Builder.name(uid)], leaver=uid)
            )
    for p in range(spec.prompts_per_day):
        ts = start + (9 + p * 4) * 3600 + rng.uniform(0, 1800)
        host = b.hosts[p % len(b.hosts)]
        items.append(
            _message(ts, host, rng.choice(PROMPTS).format(d=day_index + 1)) | {"prompt": True}
        )
    n_messages = int(len(b.present) * spec.messages_per_member_day)
    for _ in range(n_messages):
        items.append({"type": "pending", "ts": start + _day_seconds(rng) * (end - start) / 86400})
    return items


def generate(spec: GroupSpec) -> Iterator[dict[str, Any]]:
    """Export message items in time order, with ids, as Telegram Desktop writes them."""
    b = _Builder(spec)
    rng = b.rng
    creator = b.hosts[0]
    initial = [b.new_member() for _ in range(spec.initial_members)]
    t0 = b.day_start(spec.start) - 86400 + 10 * 3600
    next_id = 1
    first = _service(
        t0,
        creator,
        "create_group",
        title=spec.title,
        members=[_Builder.name(u) for u in [*b.hosts, *initial]],
    )
    for uid in initial:
        b.add(uid)
    first["id"] = next_id
    yield _finish(first)
    recent_prompt: int | None = None
    recent_posts: list[tuple[int, int]] = []  # (message id, sender) of recent member posts
    open_question: tuple[int, float] | None = None
    stop = math.inf if spec.until is None else spec.until.timestamp()
    for day_index in range(spec.days):
        items = [i for i in _day_items(b, day_index) if i["ts"] < stop]
        for item in sorted(items, key=lambda i: i["ts"]):
            next_id += 1
            item["id"] = next_id
            kind = item.pop("type")
            if kind == "service":
                uid = item.pop("joiner", None) or item.pop("leaver", None)
                if item["action"] == "join_group_by_link":
                    b.add(uid)
                else:
                    b.remove(uid)
                    b.leaves_at.pop(uid, None)
                item["type"] = "service"
            elif kind == "message":
                item["type"] = "message"
                if item.pop("prompt", False):
                    recent_prompt, open_question = item["id"], None
            else:
                if not b.present:
                    next_id -= 1
                    continue
                sender = rng.choice(b.present)
                item = _member_post(
                    rng,
                    spec,
                    item["ts"],
                    next_id,
                    sender,
                    recent_prompt,
                    recent_posts,
                    open_question,
                )
                if item.get("text", "").endswith(("？", "?", "吗")):
                    open_question = (next_id, item["ts"])
                recent_posts.append((next_id, sender))
                del recent_posts[:-20]
            yield _finish(item)


def _member_post(
    rng: random.Random,
    spec: GroupSpec,
    ts: float,
    mid: int,
    sender: int,
    prompt: int | None,
    recent: list[tuple[int, int]],
    question: tuple[int, float] | None,
) -> dict[str, Any]:
    r = rng.random()
    if prompt is not None and r < spec.reply_to_host_share:
        return _message(ts, sender, rng.choice(ANSWERS), reply_to=prompt) | {"id": mid}
    if r < spec.reply_to_host_share + 0.15 and recent:
        target, target_sender = rng.choice(recent)
        if target_sender != sender:
            return _message(ts, sender, rng.choice(ANSWERS), reply_to=target) | {"id": mid}
    if r < spec.reply_to_host_share + 0.15 + spec.question_share:
        return _message(ts, sender, rng.choice(QUESTIONS)) | {"id": mid}
    if question is not None and ts - question[1] < 600 and rng.random() < 0.5:
        return _message(ts, sender, rng.choice(ANSWERS)) | {"id": mid}
    return _message(ts, sender, rng.choice(CHATTER)) | {"id": mid}


def _finish(item: dict[str, Any]) -> dict[str, Any]:
    """Telegram Desktop's field order and date forms (2022 format: with date_unixtime)."""
    ts = int(item.pop("ts"))
    local = datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)
    out: dict[str, Any] = {
        "id": item.pop("id"),
        "type": item.pop("type"),
        "date": local.isoformat(),
        "date_unixtime": str(ts),
    }
    out.update(item)
    out.setdefault("text", "")
    out["text_entities"] = [{"type": "plain", "text": out["text"]}] if out["text"] else []
    return out


def write_export(spec: GroupSpec, path: Path) -> int:
    """Stream the export to `path`; returns the number of message items written."""
    count = 0
    with path.open("w", encoding="utf-8") as fh:
        _write_header(fh, spec)
        for item in generate(spec):
            fh.write(",\n" if count else "\n")
            fh.write("  " + json.dumps(item, ensure_ascii=False))
            count += 1
        fh.write("\n ]\n}\n")
    return count


def _write_header(fh: IO[str], spec: GroupSpec) -> None:
    fh.write("{\n")
    fh.write(f' "name": {json.dumps(spec.title, ensure_ascii=False)},\n')
    fh.write(' "type": "private_supergroup",\n')
    fh.write(f' "id": {spec.chat_id},\n')
    fh.write(' "messages": [')
