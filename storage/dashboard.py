"""Dashboard login links and sessions: stored by hash, each login link used once."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update

from storage.models import DashboardToken
from storage.repo import Repo


@dataclass(frozen=True, slots=True)
class Grant:
    """Who a login link or session belongs to, and the group a login link opens."""

    user_id: int
    chat_id: int | None


async def store_token(
    repo: Repo, token_hash: str, kind: str, user_id: int, chat_id: int | None, expires_ts: int
) -> None:
    async with repo.engine.begin() as conn:
        await conn.execute(
            insert(DashboardToken).values(
                token_hash=token_hash,
                kind=kind,
                user_id=user_id,
                chat_id=chat_id,
                expires_ts=expires_ts,
                used=False,
            )
        )


async def use_login(repo: Repo, token_hash: str, now_ts: int) -> Grant | None:
    """The login link's grant, marking it used in the same statement: two requests racing
    with one link cannot both win (the UPDATE matches an unused row once)."""
    async with repo.engine.begin() as conn:
        won = await conn.execute(
            update(DashboardToken)
            .where(
                DashboardToken.token_hash == token_hash,
                DashboardToken.kind == "login",
                DashboardToken.used.is_(False),
                DashboardToken.expires_ts > now_ts,
            )
            .values(used=True)
        )
        if won.rowcount != 1:
            return None
        row = (
            await conn.execute(
                select(DashboardToken.user_id, DashboardToken.chat_id).where(
                    DashboardToken.token_hash == token_hash
                )
            )
        ).one()
        return Grant(row.user_id, row.chat_id)


async def session_user(repo: Repo, token_hash: str, now_ts: int) -> int | None:
    async with repo.engine.connect() as conn:
        user_id: int | None = (
            await conn.execute(
                select(DashboardToken.user_id).where(
                    DashboardToken.token_hash == token_hash,
                    DashboardToken.kind == "session",
                    DashboardToken.expires_ts > now_ts,
                )
            )
        ).scalar_one_or_none()
        return user_id


async def drop_expired(repo: Repo, now_ts: int) -> None:
    async with repo.engine.begin() as conn:
        await conn.execute(delete(DashboardToken).where(DashboardToken.expires_ts <= now_ts))
