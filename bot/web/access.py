"""Who may see a group's dashboard: its admins now (the commands' getChatMember check and
5-minute cache), and its members when `public_commands = true`, as for the read commands."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from telegram import Bot
from telegram.error import TelegramError

from bot import service
from bot.config import Config
from bot.context import HOST_CACHE_TTL_S
from handlers.permissions import admin_now
from storage.repo import Repo

GONE = ("left", "kicked")


@dataclass
class Access:
    repo: Repo
    config: Config
    bot: Bot | None  # None: `opsbot dashboard` without a token reads the stored admin lists
    admin_cache: dict[tuple[int, int], tuple[float, bool]] = field(default_factory=dict)
    member_cache: dict[tuple[int, int], tuple[float, bool]] = field(default_factory=dict)

    async def is_admin(self, chat_id: int, user_id: int) -> bool:
        if self.bot is not None:
            return await admin_now(self.bot, self.admin_cache, chat_id, user_id)
        return user_id in await self.repo.admin_hosts(chat_id)

    async def is_member(self, chat_id: int, user_id: int) -> bool:
        hit = self.member_cache.get((chat_id, user_id))
        if hit is not None and time.monotonic() - hit[0] <= HOST_CACHE_TTL_S:
            return hit[1]
        if self.bot is None:
            return False
        try:
            member = await self.bot.get_chat_member(chat_id, user_id)
            result = member.status not in GONE and getattr(member, "is_member", True)
        except TelegramError:
            result = False
        self.member_cache[(chat_id, user_id)] = (time.monotonic(), result)
        return result

    async def may_read(self, chat_id: int, user_id: int) -> bool:
        if await self.is_admin(chat_id, user_id):
            return True
        settings = await service.group_settings(self.repo, self.config, chat_id)
        return settings.public_commands and await self.is_member(chat_id, user_id)

    async def admin_chats(self, user_id: int) -> list[dict[str, object]]:
        """The groups this user administers now: `GET /api/chats`."""
        out: list[dict[str, object]] = []
        for chat_id in await self.repo.chat_ids(active_only=False):  # imported groups too
            if await self.is_admin(chat_id, user_id):
                info = await self.repo.chat(chat_id)
                out.append({"chat_id": chat_id, "title": (info and info.title) or str(chat_id)})
        return out
