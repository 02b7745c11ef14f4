"""Dashboard sign-in and rights through the ASGI app: Mini App initData checked as Telegram
documents it, and admins now (getChatMember on the fake Bot API, cached at most 5 minutes)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from telegram import Bot

from bot.web.access import Access
from bot.web.app import WebState
from handlers import permissions
from storage.repo import Repo
from tests import tg
from tests.botapi_server import TOKEN, FakeBotAPI
from tests.web_helpers import ADMIN, OUTSIDER, client_for, config_for, sign_init_data, small_group


@pytest.fixture
def api() -> Iterator[FakeBotAPI]:
    server = FakeBotAPI().start()
    yield server
    server.stop()


@pytest.fixture
async def site(
    api: FakeBotAPI, db_url: str, tmp_path: Path
) -> AsyncIterator[tuple[WebState, int]]:
    config = config_for(db_url, TOKEN)
    repo = await Repo.open(db_url)
    chat_id = await small_group(repo, config, tmp_path, days=3)
    api.admins[chat_id] = [tg.member(tg.user(ADMIN, "Host 0"), "administrator")]
    bot = Bot(TOKEN, base_url=f"{api.base_url}/bot")
    try:
        yield WebState(repo, config, Access(repo, config, bot), TOKEN), chat_id
    finally:
        await repo.close()


async def test_signed_init_data_is_accepted(site: tuple[WebState, int]) -> None:
    state, chat_id = site
    async with client_for(state) as client:
        signed = sign_init_data(TOKEN, ADMIN)
        resp = await client.post("/auth/webapp", json={"init_data": signed})
        assert resp.status_code == 200
        assert (await client.get("/api/chats")).json()[0]["chat_id"] == chat_id
        assert (await client.get(f"/chats/{chat_id}")).status_code == 200
    async with client_for(state) as header_only:
        resp = await header_only.get("/api/chats", headers={"Authorization": f"tma {signed}"})
        assert resp.status_code == 200
        assert resp.json()[0]["chat_id"] == chat_id


def _tampered(signed: str) -> str:
    return signed.replace("%22id%22%3A" + str(ADMIN), "%22id%22%3A" + str(OUTSIDER))


@pytest.mark.parametrize(
    "init_data",
    [
        pytest.param(lambda: _tampered(sign_init_data(TOKEN, ADMIN)), id="tampered-user"),
        pytest.param(lambda: sign_init_data("654321:OTHER-TOKEN", ADMIN), id="wrong-token"),
        pytest.param(
            lambda: sign_init_data(TOKEN, ADMIN, auth_date=int(time.time()) - 3601), id="stale"
        ),
        pytest.param(
            lambda: sign_init_data(TOKEN, ADMIN).rsplit("&hash=", 1)[0], id="missing-hash"
        ),
        pytest.param(lambda: sign_init_data(TOKEN, ADMIN) + "&start_param=x", id="added-field"),
    ],
)
async def test_bad_init_data_is_refused(site: tuple[WebState, int], init_data: object) -> None:
    state, chat_id = site
    bad = init_data()  # type: ignore[operator]
    assert "hash=" in sign_init_data(TOKEN, ADMIN)
    async with client_for(state) as client:
        resp = await client.post("/auth/webapp", json={"init_data": bad})
        assert resp.status_code == 401
        assert "set-cookie" not in resp.headers
        assert (await client.get("/api/chats")).status_code == 401
        header = {"Authorization": f"tma {bad}"}
        resp = await client.get(f"/api/chats/{chat_id}/report", headers=header)
        assert resp.status_code == 401


async def test_a_non_admin_gets_403_for_pages_and_api(
    site: tuple[WebState, int], api: FakeBotAPI
) -> None:
    state, chat_id = site
    async with client_for(state) as client:
        await client.post("/auth/webapp", json={"init_data": sign_init_data(TOKEN, OUTSIDER)})
        assert (await client.get("/api/chats")).json() == []
        for path in (
            f"/chats/{chat_id}",
            f"/api/chats/{chat_id}/report",
            f"/api/chats/{chat_id}/insights",
            f"/api/chats/{chat_id}/cohorts",
            f"/api/chats/{chat_id}/export.csv",
        ):
            resp = await client.get(path)
            assert resp.status_code == 403, path
            assert "headcount" not in resp.text
    asked = [c for c in api.calls_of("getChatMember") if int(c.params["user_id"]) == OUTSIDER]
    assert asked  # Telegram was asked, not a stored guess


async def test_a_demoted_admin_keeps_access_only_within_the_cache_window(
    site: tuple[WebState, int], api: FakeBotAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, chat_id = site
    async with client_for(state) as client:
        await client.post("/auth/webapp", json={"init_data": sign_init_data(TOKEN, ADMIN)})
        assert (await client.get(f"/api/chats/{chat_id}/report")).status_code == 200
        api.admins[chat_id] = []  # demoted in Telegram
        assert (await client.get(f"/api/chats/{chat_id}/report")).status_code == 200  # cached
        later = time.monotonic() + permissions.HOST_CACHE_TTL_S + 1
        monkeypatch.setattr(permissions.time, "monotonic", lambda: later)
        assert (await client.get(f"/api/chats/{chat_id}/report")).status_code == 403
        assert (await client.get(f"/chats/{chat_id}")).status_code == 403
        assert (await client.get("/api/chats")).json() == []


async def test_public_commands_lets_members_read_but_not_see_quiet_newcomers(
    site: tuple[WebState, int], api: FakeBotAPI
) -> None:
    from dataclasses import replace

    state, chat_id = site
    config = replace(state.config, defaults=replace(state.config.defaults, public_commands=True))
    state = WebState(state.repo, config, Access(state.repo, config, state.access.bot), TOKEN)
    api.members[(chat_id, OUTSIDER)] = tg.member(tg.user(OUTSIDER), "member")
    async with client_for(state) as client:
        await client.post("/auth/webapp", json={"init_data": sign_init_data(TOKEN, OUTSIDER)})
        assert (await client.get(f"/api/chats/{chat_id}/report")).status_code == 200
        assert (await client.get(f"/api/chats/{chat_id}/insights")).json()["quiet"] == []
        assert (await client.get("/api/chats")).json() == []  # the list is of administered ones
