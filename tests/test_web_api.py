"""The dashboard's JSON API through the ASGI app (httpx.ASGITransport), on a real database:
the same numbers as `opsbot report --json` / `opsbot insights --json`, and who sees what."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from bot.cli import main
from bot.web.app import login_link
from storage.repo import Repo
from tests.web_helpers import (
    ADMIN,
    OUTSIDER,
    client_for,
    config_for,
    offline_state,
    small_group,
)


@pytest.fixture
async def group(db_url: str, tmp_path: Path) -> AsyncIterator[tuple[Repo, int]]:
    repo = await Repo.open(db_url)
    try:
        yield repo, await small_group(repo, config_for(db_url), tmp_path)
    finally:
        await repo.close()


async def _cli_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> object:
    capsys.readouterr()
    assert await asyncio.to_thread(main, argv) == 0
    return json.loads(capsys.readouterr().out)


async def test_api_numbers_equal_the_cli_json(
    group: tuple[Repo, int], db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, chat_id = group
    config = config_for(db_url)
    (tmp_path / "c.toml").write_text(f'[storage]\nurl = "{db_url}"\n')
    state = offline_state(repo, config)
    link = await login_link(state.repo, state.base_url, ADMIN, chat_id)
    today = datetime.now(UTC).astimezone(config.defaults.tz).date()
    async with client_for(state) as client:
        assert (await client.get(link.removeprefix(state.base_url))).status_code == 200
        for back in (1, 3):
            day = (today - timedelta(days=back)).isoformat()
            api = (await client.get(f"/api/chats/{chat_id}/report?date={day}")).json()
            cli = await _cli_json(
                [
                    "report",
                    "--chat",
                    str(chat_id),
                    "--date",
                    day,
                    "--json",
                    "--config",
                    str(tmp_path / "c.toml"),
                ],
                capsys,
            )
            assert api == cli
            assert api["joins"] > 0
            assert api["targets"]
        a, b = (today - timedelta(days=6)).isoformat(), (today - timedelta(days=2)).isoformat()
        api = (await client.get(f"/api/chats/{chat_id}/insights?from={a}&to={b}")).json()
        cli = await _cli_json(
            [
                "insights",
                "--chat",
                str(chat_id),
                "--from",
                a,
                "--to",
                b,
                "--json",
                "--config",
                str(tmp_path / "c.toml"),
            ],
            capsys,
        )
        assert api == cli
        assert api["sources"][0]["joins"] > 0
        assert len(api["funnel"]["steps"]) == 6


async def test_cohorts_and_csv_show_the_retention_command_numbers(
    group: tuple[Repo, int], db_url: str
) -> None:
    from bot import service

    repo, chat_id = group
    config = config_for(db_url)
    state = offline_state(repo, config)
    link = await login_link(state.repo, state.base_url, ADMIN, None)
    async with client_for(state) as client:
        await client.get(link.removeprefix(state.base_url))
        body = (await client.get(f"/api/chats/{chat_id}/cohorts")).json()
        rows, _ = await service.retention_rows(repo, config, chat_id, 14, datetime.now(UTC))
        assert [r["day"] for r in body["rows"]] == [r["day"] for r in rows]
        assert [r["joins"] for r in body["rows"]] == [r["joins"] for r in rows]
        assert body["windows"] == ["1h", "day0", "day1"]
        a, b = body["rows"][0]["day"], body["rows"][-1]["day"]
        csv_text = (await client.get(f"/api/chats/{chat_id}/export.csv?from={a}&to={b}")).text
        lines = csv_text.splitlines()
        assert lines[0].startswith(
            "date,joins,retention_1h,retention_day0,retention_day1,audience"
        )
        assert len(lines) == 15
        assert lines[1].split(",")[:2] == [a, str(rows[0]["joins"])]
        later = (date.fromisoformat(b) + timedelta(days=1)).isoformat()
        for query, word in (
            (f"cohorts?from={a}&to={later}", "has not begun"),
            (f"report?date={later}", "has not begun"),
            (f"insights?from=2001-01-01&to={b}", "2013-08-14"),
            (f"cohorts?from={a}", "both"),
            (f"cohorts?from={b}&to={a}", "after"),
        ):
            resp = await client.get(f"/api/chats/{chat_id}/{query}")
            assert resp.status_code == 400, query
            assert word in resp.json()["error"]
        bad = await client.get(f"/api/chats/{chat_id}/cohorts?from=2026-13-01&to={b}")
        assert bad.status_code == 400
        assert "from" in bad.json()["error"]


async def test_nothing_is_served_without_a_session(group: tuple[Repo, int], db_url: str) -> None:
    repo, chat_id = group
    state = offline_state(repo, config_for(db_url))
    async with client_for(state) as client:
        for path in (
            "/",
            f"/chats/{chat_id}",
            "/api/chats",
            f"/api/chats/{chat_id}/report?date=2026-11-20",
            f"/api/chats/{chat_id}/insights?from=2026-11-01&to=2026-11-20",
            f"/api/chats/{chat_id}/cohorts",
            f"/api/chats/{chat_id}/export.csv",
        ):
            resp = await client.get(path)
            assert resp.status_code == 401, path
            assert str(chat_id) not in resp.text
        client.cookies.set("opsbot_session", "forged")
        assert (await client.get("/api/chats")).status_code == 401


async def test_a_login_link_works_once_and_the_group_list_has_only_administered_groups(
    group: tuple[Repo, int], db_url: str
) -> None:
    repo, chat_id = group
    other = -100555
    await repo.ensure_chat(other, "Someone else's group", "supergroup")
    await repo.sync_admins(other, {OUTSIDER}, datetime.now(UTC))
    state = offline_state(repo, config_for(db_url))
    link = (await login_link(state.repo, state.base_url, ADMIN, chat_id)).removeprefix(
        state.base_url
    )
    async with client_for(state) as client:
        first = await client.get(link)
        assert first.status_code == 200
        assert f"/chats/{chat_id}" in first.text
        cookie = first.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        assert "max-age=43200" in cookie
        assert "secure" not in cookie  # plain http on 127.0.0.1
        assert (await client.get("/api/chats")).json() == [
            {"chat_id": chat_id, "title": "AI 训练营 · Demo"}
        ]
        page = await client.get("/")
        assert "AI 训练营 · Demo" in page.text
        assert "Someone else" not in page.text
        assert (await client.get(f"/api/chats/{other}/report")).status_code == 403
        assert (await client.get(f"/chats/{other}")).status_code == 403
    async with client_for(state) as again:
        assert (await again.get(link)).status_code == 401
        assert (await again.get("/api/chats")).status_code == 401


async def test_login_attempts_are_rate_limited(group: tuple[Repo, int], db_url: str) -> None:
    repo, _ = group
    state = offline_state(repo, config_for(db_url))
    async with client_for(state) as client:
        codes = [(await client.get(f"/login/guess{i}")).status_code for i in range(25)]
    assert codes[:20] == [401] * 20
    assert codes[20:] == [429] * 5


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        ("zh", {"day7": ("第7天", "第7天留存"), "24h": ("24小时", "24小时留存")}),
        ("en", {"day7": ("Day 7", "Day-7 retention"), "24h": ("24 hours", "24-hour retention")}),
    ],
)
async def test_the_page_names_configured_windows_and_targets_in_the_group_language(
    db_url: str, tmp_path: Path, lang: str, expected: dict[str, tuple[str, str]]
) -> None:
    """The names the page gives the JSON answers' ids come from the chat texts, for every
    configured window and every target in force, in the group's language."""
    import re

    from bot.config import Target
    from bot.reports import window_label

    config = config_for(
        db_url,
        language=lang,
        windows=("1h", "day1", "24h", "day7"),
        targets=(Target("retention_day7", 0.5),),
    )
    repo = await Repo.open(db_url)
    try:
        chat_id = await small_group(repo, config, tmp_path)
        state = offline_state(repo, config)
        link = await login_link(state.repo, state.base_url, ADMIN, chat_id)
        async with client_for(state) as client:
            await client.get(link.removeprefix(state.base_url))
            page = (await client.get(f"/chats/{chat_id}")).text
    finally:
        await repo.close()
    found = re.search(r'<script id="cfg" type="application/json">(.*?)</script>', page)
    assert found
    names = json.loads(found.group(1))["names"]
    for window, (column, metric) in expected.items():
        assert names["windows"][window] == column
        assert names["metrics"][f"retention_{window}"] == metric
        assert window_label(lang, window).lower() == column.lower()  # the /retention header
    assert names["metrics"]["retention_day1"] == (
        "次日留存" if lang == "zh" else "Next-day retention"
    )
    assert set(names["steps"]) == {
        "joined",
        "stayed_1h",
        "stayed_day1",
        "responded",
        "interacted",
        "referred",
    }
    assert names["pp"] == ("{n} 个百分点" if lang == "zh" else "{n} pp")
    assert names["target"] == ("目标 {value}" if lang == "zh" else "Target {value}")
