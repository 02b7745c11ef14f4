"""The typed callback context: dependencies travel here, not in module globals."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from telegram.ext import Application, CallbackContext, ExtBot

from bot.config import Config, GroupSettings
from storage.repo import Repo

HOST_CACHE_TTL_S = 300  # SPEC/issue: admin lists at most 5 minutes stale


@dataclass
class HostCache:
    """Hosts per chat (admins + config + /hosts), re-read from storage at most every 5 min."""

    entries: dict[int, tuple[float, frozenset[int]]] = field(default_factory=dict)

    def get(self, chat_id: int) -> frozenset[int] | None:
        hit = self.entries.get(chat_id)
        if hit is None or time.monotonic() - hit[0] > HOST_CACHE_TTL_S:
            return None
        return hit[1]

    def put(self, chat_id: int, hosts: frozenset[int]) -> None:
        self.entries[chat_id] = (time.monotonic(), hosts)

    def forget(self, chat_id: int) -> None:
        self.entries.pop(chat_id, None)


class AppContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    """CallbackContext with typed access to opsbot's services in bot_data."""

    @property
    def repo(self) -> Repo:
        repo: Repo = self.bot_data["repo"]
        return repo

    @property
    def config(self) -> Config:
        config: Config = self.bot_data["config"]
        return config

    @property
    def host_cache(self) -> HostCache:
        cache: HostCache = self.bot_data.setdefault("host_cache", HostCache())
        return cache

    @property
    def tracked_chats(self) -> set[int]:
        tracked: set[int] = self.bot_data.setdefault("tracked_chats", set())
        return tracked

    def settings(self, chat_id: int) -> GroupSettings:
        return self.config.for_chat(chat_id)

    async def linked_chat(self, chat_id: int) -> int | None:
        """The group's linked channel, re-read from storage at most every 5 minutes."""
        cache: dict[int, tuple[float, int | None]] = self.bot_data.setdefault("linked", {})
        hit = cache.get(chat_id)
        if hit is not None and time.monotonic() - hit[0] <= HOST_CACHE_TTL_S:
            return hit[1]
        info = await self.repo.chat(chat_id)
        linked = info.linked_chat_id if info else None
        cache[chat_id] = (time.monotonic(), linked)
        return linked

    async def hosts(self, chat_id: int) -> frozenset[int]:
        cached = self.host_cache.get(chat_id)
        if cached is not None:
            return cached
        hosts = frozenset(
            await self.repo.admin_hosts(chat_id)
            | await self.repo.manual_hosts(chat_id)
            | self.settings(chat_id).hosts
        )
        self.host_cache.put(chat_id, hosts)
        return hosts


OpsApplication = Application[
    ExtBot[None], AppContext, dict[Any, Any], dict[Any, Any], dict[Any, Any], Any
]
