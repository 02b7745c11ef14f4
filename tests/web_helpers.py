"""Dashboard test helpers: a small synthetic group in a real database, signed initData."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx

from bot import importer, synthetic
from bot.config import Config, GroupSettings
from bot.web.access import Access
from bot.web.app import WebState, build_web_app
from bot.web.auth import init_data_hash
from storage.repo import Repo

ADMIN = synthetic.HOST_BASE_ID  # "Host 0": an admin of the synthetic group
OUTSIDER = 777_000_111


async def small_group(repo: Repo, config: Config, tmp_path: Path, days: int = 8) -> int:
    """A synthetic group of `days` days up to now, imported; targets as an owner sets them."""
    now = datetime.now(UTC)
    today = now.astimezone(config.defaults.tz).date()
    spec = synthetic.GroupSpec(
        start=today - timedelta(days=days - 1),
        days=days,
        timezone=config.defaults.timezone,
        until=now,
        initial_members=60,
        joins_per_day=10,
    )
    export = tmp_path / "result.json"
    synthetic.write_export(spec, export)
    hosts = [synthetic.HOST_BASE_ID + i for i in range(spec.hosts)]
    await importer.import_export(repo, config, export, hosts=hosts)
    chat_id = int(f"-100{spec.chat_id}")
    await repo.set_chat_target(chat_id, "retention_day1", 0.8, None, 0, now)
    await repo.set_chat_target(chat_id, "response_rate", 0.2, "last 7", 0, now)
    return chat_id


def config_for(db_url: str, token: str | None = None, **defaults: object) -> Config:
    return Config(token=token, storage_url=db_url, defaults=GroupSettings(**defaults))  # type: ignore[arg-type]


def client_for(state: WebState) -> httpx.AsyncClient:
    app = build_web_app(state)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8080"
    )


def offline_state(repo: Repo, config: Config) -> WebState:
    """`opsbot dashboard` without a bot: the stored admin lists decide."""
    return WebState(repo, config, Access(repo, config, None), config.token)


def sign_init_data(token: str, user_id: int, auth_date: int | None = None, **extra: str) -> str:
    """initData as Telegram signs it for a Mini App opened by `user_id`."""
    fields = {
        "auth_date": str(int(time.time()) if auth_date is None else auth_date),
        "query_id": "AAHdF6IQAAAAAN0XohDhrOrc",
        "user": json.dumps(
            {"id": user_id, "first_name": "Lei", "language_code": "zh"}, separators=(",", ":")
        ),
        **extra,
    }
    fields["hash"] = init_data_hash(fields, token)
    return urlencode(fields)
