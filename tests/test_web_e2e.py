"""Opening the dashboard from Telegram, through `opsbot run`'s own path (run_until: the real
Application on the fake Bot API server, the dashboard in the same process and loop)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, WebAppInfo
from telegram.error import BadRequest

from bot.app import build_application, run_until
from bot.config import DashboardSettings
from bot.context import OpsApplication
from storage.repo import Repo
from tests import tg
from tests.botapi_server import TOKEN, FakeBotAPI
from tests.e2e import free_port, make_config, settle
from tests.web_helpers import ADMIN, OUTSIDER, sign_init_data, small_group

PUBLIC = "https://dash.example.org"




@pytest.fixture
def api() -> Iterator[FakeBotAPI]:
    server = FakeBotAPI().start()
    yield server
    server.stop()


@pytest.fixture
async def live(
    api: FakeBotAPI, db_url: str, tmp_path: Path
) -> AsyncIterator[tuple[OpsApplication, int, str]]:
    """`opsbot run` with [dashboard] enabled; yields the app, the group and the local URL."""
    port = free_port()
    config = replace(
        make_config(api, db_url),
        dashboard=DashboardSettings(True, "127.0.0.1", port, PUBLIC),
    )
    repo = await Repo.open(db_url)
    try:
        chat_id = await small_group(repo, config, tmp_path, days=3)
    finally:
        await repo.close()
    api.chats[chat_id] = tg.group(chat_id, "AI 训练营 · Demo")
    api.admins[chat_id] = [tg.member(tg.user(ADMIN, "Host 0"), "administrator")]
    app = build_application(config)
    stop = asyncio.Event()
    task = asyncio.create_task(run_until(app, stop))
    local = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                if (await client.get(f"{local}/app")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert not task.done(), task.exception()
            await asyncio.sleep(0.05)
    try:
        yield app, chat_id, local
    finally:
        stop.set()
        await task


def _command(chat: dict[str, object], sender: dict[str, object], text: str) -> dict[str, object]:
    name = text.split()[0]
    return tg.message(
        chat,
        50,
        1_700_000_000,
        sender,
        text,
        entities=[{"type": "bot_command", "offset": 0, "length": len(name)}],
    )


def _buttons(call_params: dict[str, object]) -> list[dict[str, object]]:
    markup: dict[str, list[list[dict[str, object]]]] = call_params["reply_markup"]  # type: ignore[assignment]
    return [b for row in markup["inline_keyboard"] for b in row]


def _replies_to(api: FakeBotAPI, chat_id: int) -> list[dict[str, object]]:
    return [c.params for c in api.calls_of("sendMessage") if int(c.params["chat_id"]) == chat_id]


async def test_dashboard_in_a_group_deep_links_to_the_private_chat_for_admins_only(
    api: FakeBotAPI, live: tuple[OpsApplication, int, str]
) -> None:
    _, chat_id, _ = live
    group = tg.group(chat_id, "AI 训练营 · Demo")
    api.push(_command(group, tg.user(OUTSIDER), "/dashboard"))
    api.push(_command(group, tg.user(ADMIN, "Host 0"), "/dashboard"))
    await settle(api)
    refused, answer = _replies_to(api, chat_id)[-2:]
    assert refused["text"] == "只有本群管理员可以使用这个命令。"
    assert "reply_markup" not in refused
    [button] = _buttons(answer)
    assert button["url"] == f"https://t.me/opsbot_test_bot?start=dash_{chat_id}"
    assert "web_app" not in button  # web_app buttons are for private chats only


async def test_start_dash_sends_the_mini_app_button_and_a_one_time_login_link(
    api: FakeBotAPI, live: tuple[OpsApplication, int, str]
) -> None:
    _, chat_id, local = live
    me = tg.user(ADMIN, "Host 0")
    private = {"id": ADMIN, "type": "private", "first_name": "Host 0"}
    api.push(_command(private, me, f"/start dash_{chat_id}"))
    stranger = {"id": OUTSIDER, "type": "private", "first_name": "U"}
    api.push(_command(stranger, tg.user(OUTSIDER), f"/start dash_{chat_id}"))
    await settle(api)
    [sent] = _replies_to(api, ADMIN)
    assert [c.status for c in api.calls_of("sendMessage") if c.params is sent] == [200]
    [button] = _buttons(sent)
    assert button["web_app"] == {"url": f"{PUBLIC}/app?chat={chat_id}"}
    assert sent["link_preview_options"] == {"is_disabled": True}
    link = next(w for w in str(sent["text"]).split() if w.startswith(f"{PUBLIC}/login/"))
    assert "AI 训练营 · Demo" in str(sent["text"])
    [other] = _replies_to(api, OUTSIDER)
    assert other["text"] == "只有本群管理员可以使用这个命令。"
    assert "reply_markup" not in other
    path = urlparse(link).path
    async with httpx.AsyncClient(base_url=local) as client:
        first = await client.get(path)
        assert first.status_code == 200
        cookie = first.headers["set-cookie"]
        assert "Secure" in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert (await client.get(path)).status_code == 401  # once only


async def test_the_menu_button_opens_the_group_list_and_signed_init_data_signs_in(
    api: FakeBotAPI, live: tuple[OpsApplication, int, str]
) -> None:
    _, chat_id, local = live
    assert api.menu_button == {
        "type": "web_app",
        "text": "仪表盘",
        "web_app": {"url": f"{PUBLIC}/app"},
    }
    signed = sign_init_data(TOKEN, ADMIN)
    async with httpx.AsyncClient(base_url=local) as client:
        assert (await client.post("/auth/webapp", json={"init_data": signed})).status_code == 200
        tma = {"Authorization": f"tma {signed}"}
        assert (await client.get("/api/chats", headers=tma)).json() == [
            {"chat_id": chat_id, "title": "AI 训练营 · Demo"}
        ]
        report = await client.get(f"/api/chats/{chat_id}/report", headers=tma)
        assert report.status_code == 200
        assert report.json()["chat_id"] == chat_id
        api.admins[chat_id] = []
        outsider = {"Authorization": f"tma {sign_init_data(TOKEN, OUTSIDER)}"}
        assert (await client.get(f"/chats/{chat_id}", headers=outsider)).status_code == 403
    # the same getChatMember cache as the commands
    assert (chat_id, ADMIN) in live[0].bot_data["admin_checks"]


async def test_the_fake_server_refuses_web_app_buttons_outside_private_chats(
    live: tuple[OpsApplication, int, str],
) -> None:
    app, chat_id, _ = live
    markup = InlineKeyboardMarkup(
        [[InlineKeyboardButton("open", web_app=WebAppInfo(f"{PUBLIC}/app"))]]
    )
    with pytest.raises(BadRequest, match="(?i)button_type_invalid"):
        await app.bot.send_message(chat_id, "x", reply_markup=markup)
    plain = InlineKeyboardMarkup(
        [[InlineKeyboardButton("open", web_app=WebAppInfo("http://127.0.0.1/app"))]]
    )
    with pytest.raises(BadRequest, match="(?i)only https links"):
        await app.bot.send_message(ADMIN, "x", reply_markup=plain)


async def test_dashboard_in_the_private_chat_opens_the_group_list(
    api: FakeBotAPI, live: tuple[OpsApplication, int, str]
) -> None:
    _, chat_id, local = live
    private = {"id": ADMIN, "type": "private", "first_name": "Host 0"}
    api.push(_command(private, tg.user(ADMIN, "Host 0"), "/dashboard"))
    await settle(api)
    [sent] = _replies_to(api, ADMIN)
    [button] = _buttons(sent)
    assert button["web_app"] == {"url": f"{PUBLIC}/app"}
    link = next(w for w in str(sent["text"]).split() if w.startswith(f"{PUBLIC}/login/"))
    async with httpx.AsyncClient(base_url=local) as client:
        page = await client.get(urlparse(link).path)
        assert page.status_code == 200
        assert 'url=/"' in page.text  # on to the group list


async def test_a_busy_dashboard_port_stops_opsbot_run_with_one_clear_line(
    api: FakeBotAPI, db_url: str
) -> None:
    from bot.app import StartupError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = replace(
            make_config(api, db_url),
            dashboard=DashboardSettings(True, "127.0.0.1", port, PUBLIC),
        )
        with pytest.raises(
            StartupError, match=rf"cannot listen on 127.0.0.1:{port}.*\[dashboard\]"
        ):
            await run_until(build_application(config), asyncio.Event())
