"""The dashboard in a real browser: headless Chromium (Debian's) driven by Playwright opens
`opsbot demo --serve` through its login link and checks the numbers a user sees.

Screenshots go to $OPSBOT_SCREENS (default: a temporary folder; the path is printed).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import free_port

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None  # type: ignore[assignment]

pytestmark = [
    pytest.mark.skipif(
        sync_playwright is None, reason="playwright is not installed (pip install -e '.[test]')"
    ),
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None,
        reason="Debian's chromium is not installed (apt-get install -y chromium)",
    ),
]




@pytest.fixture(scope="module")
def screens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("OPSBOT_SCREENS") or tmp_path_factory.mktemp("screens"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`opsbot demo --serve --port N` as a user runs it; stopped with SIGTERM at the end."""
    out = tmp_path_factory.mktemp("demo")
    port = free_port()
    (out / "empty.toml").write_text("")
    err = (out / "stderr.txt").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "demo",
            "--serve",
            "--port",
            str(port),
            "--out",
            str(out / "d"),
            "--config",
            str(out / "empty.toml"),
        ],
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
    )
    assert proc.stdout is not None
    link = None
    deadline = time.monotonic() + 240
    while line := proc.stdout.readline():
        if re.fullmatch(rf"http://127\.0\.0\.1:{port}/login/\S+", line.strip()):
            link = line.strip()
            break
        assert time.monotonic() < deadline
    assert link, (out / "stderr.txt").read_text()
    try:
        yield {"link": link, "port": port, "db": out / "d" / "demo.db", "proc": proc}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        proc.stdout.close()
        err.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert sync_playwright is not None
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def signed_in(browser: Browser, demo: dict[str, Any]) -> Iterator[Page]:
    """A phone-sized page, signed in through the demo's one-time login link."""
    context = browser.new_context(viewport={"width": 400, "height": 860})
    page = context.new_page()
    started = time.monotonic()
    page.goto(demo["link"])
    page.wait_for_url(re.compile(r"/chats/-?\d+"))
    page.wait_for_selector("body[data-loaded*='..']", timeout=60_000)
    print(f"group page loaded (login, page, all API calls) in {time.monotonic() - started:.2f}s")
    yield page
    context.close()


def cell_label(cell: dict[str, Any]) -> str:
    """What a heat-map cell shows (dashboard.js cellLabel): the rate, `*` while part is
    pending, `…` while nothing has matured; an empty day shows nothing."""
    if cell["rate"] is None:
        return "…" if cell["pending"] > 0 else ""
    return f"{int(cell['rate'] * 100 + 0.5)}%" + ("*" if cell["pending"] else "")


def shown_labels(page: Page) -> Counter[str]:
    texts: list[str] = page.eval_on_selector_all(
        "#cohorts svg text", "els => els.map(e => e.textContent)"
    )
    return Counter(t for t in texts if re.fullmatch(r"\d+%\*?|…", t))


def api_labels(page: Page, chat_path: str, day_from: str, day_to: str) -> Counter[str]:
    origin = re.sub(r"^(https?://[^/]+).*$", r"\1", page.url)
    resp = page.request.get(f"{origin}/api{chat_path}/cohorts?from={day_from}&to={day_to}")
    assert resp.ok
    body = resp.json()
    labels = [cell_label(r["cells"][w]) for r in body["rows"] for w in body["windows"]]
    return Counter(x for x in labels if x)


def _path(page: Page) -> str:
    m = re.search(r"(/chats/-?\d+)", page.url)
    assert m
    return m.group(1)


def test_heat_map_cells_show_the_api_numbers_and_follow_the_range(
    signed_in: Page, screens: Path
) -> None:
    page = signed_in
    chat = _path(page)
    day_from, day_to = page.input_value("#from"), page.input_value("#to")
    first = shown_labels(page)
    assert sum(first.values()) >= 14  # 14 join days, three windows, most matured
    assert first == api_labels(page, chat, day_from, day_to)
    assert page.inner_text("h2 >> nth=1") == "按进群日期的留存"
    page.screenshot(path=str(screens / "zh-phone.png"), full_page=True)
    # an older range of 5 join days
    a = (date.fromisoformat(day_to) - timedelta(days=12)).isoformat()
    b = (date.fromisoformat(day_to) - timedelta(days=8)).isoformat()
    page.fill("#from", a)
    page.fill("#to", b)
    page.click("#apply")
    page.wait_for_selector(f"body[data-loaded='{a}..{b}']")
    second = shown_labels(page)
    assert second == api_labels(page, chat, a, b)
    assert second != first
    assert sum(second.values()) == 15  # 5 days x 3 windows, all matured
    assert page.get_attribute("#csv", "href") == f"/api{chat}/export.csv?from={a}&to={b}"
    check_names(page, "zh")
    page.set_viewport_size({"width": 1200, "height": 900})
    page.locator("#kpis").screenshot(path=str(screens / "zh-kpis.png"))
    page.locator("#trends").screenshot(path=str(screens / "zh-trends.png"))
    page.locator("#funnel").screenshot(path=str(screens / "zh-funnel.png"))
    page.set_viewport_size({"width": 400, "height": 860})


RAW_IDS = re.compile(
    r"retention_|response_rate|interaction_rate|stayed_|\b(?:joined|responded|interacted|"
    r"referred|day\d+|\d+h)\b|✅|❌| pt\b"
)


def svg_texts(page: Page, chart: str) -> list[str]:
    texts: list[str] = page.eval_on_selector_all(
        f"#{chart} svg text", "els => els.map(e => e.textContent)"
    )
    return texts


def js_pct(rate: float | None) -> str:
    """dashboard.js pct(): 0.835 -> `83.5%`, 1 -> `100%`."""
    return "–" if rate is None else f"{int(rate * 1000 + 0.5) / 10:g}%"


def check_names(page: Page, lang: str) -> None:
    """Where the page names a metric, a retention window or a funnel step, it uses the chat
    texts' names in the group's language, never the ids of the JSON answers."""
    from bot.i18n import t
    from bot.reports import metric_label

    origin = re.sub(r"^(https?://[^/]+).*$", r"\1", page.url)
    api = f"{origin}/api{_path(page)}"
    day = page.inner_text("#report-day").split()[-1]
    report = page.request.get(f"{api}/report?date={day}").json()
    q = f"?from={page.input_value('#from')}&to={page.input_value('#to')}"
    insights = page.request.get(f"{api}/insights{q}").json()
    zh = lang == "zh"
    # KPI cards: the metric's name, a drawn mark and the met/missed word, the change in pp
    titles = page.eval_on_selector_all("#kpis .metric", "els => els.map(e => e.textContent)")
    assert titles == [metric_label(lang, x["metric"]) for x in report["targets"]]
    assert ("次日留存" if zh else "Next-day retention") in titles
    assert ("响应率" if zh else "Response rate") in titles
    status = page.eval_on_selector_all(
        "#kpis .status",
        "els => els.map(e => [e.textContent, e.className,"
        " e.querySelector('.mark') ? e.querySelector('.mark').getBoundingClientRect().width : 0])",
    )
    met, missed = ("达标", "未达标") if zh else ("met", "missed")
    for (text, cls, mark_width), x in zip(status, report["targets"], strict=True):
        if x["met"] is not None:
            assert text == (met if x["met"] else missed)
            assert cls == ("status met" if x["met"] else "status missed")
            assert mark_width > 8
    changes = page.eval_on_selector_all(
        "#kpis .change:last-child", "els => els.map(e => e.textContent)"
    )
    unit = r" 个百分点" if zh else r" pp"
    before = "较前一天" if zh else "vs the day before"
    assert changes
    assert all(re.fullmatch(rf"{before} (–|[↑↓→]\d+\.\d{unit})", c) for c in changes)
    assert any("–" not in c for c in changes)
    assert page.evaluate("opsbotPpChange(0.5, 0.528)") == "↓" + t(lang, "pp", n="2.8")
    assert page.evaluate("opsbotPpChange(0.9, 0.88)") == "↑" + t(lang, "pp", n="2.0")
    # the trend chart: the legend's names, and the target lines labelled inside the chart
    option = "echarts.getInstanceByDom(document.getElementById('%s')).getOption()"
    series = page.evaluate(f"{option % 'trends'}.series.map(s => s.name)")
    windows = (
        ("1小时留存", "当天留存", "次日留存")
        if zh
        else ("1-hour retention", "Same-day retention", "Next-day retention")
    )
    rates = ("响应率", "互动率") if zh else ("Response rate", "Interaction rate")
    assert series == [*windows, *rates]
    legend = svg_texts(page, "trends")
    assert set(legend) >= {windows[0], windows[1]}
    box = page.eval_on_selector("#trends", "e => e.getBoundingClientRect().right")
    marks = page.eval_on_selector_all(
        "#trends svg text",
        "els => els.map(e => [e.textContent, e.getBoundingClientRect().right])",
    )
    targets = [f"{'目标' if zh else 'Target'} {js_pct(x['target'])}" for x in report["targets"]]
    drawn = {text: right for text, right in marks if text in targets}
    assert set(drawn) == set(targets)
    assert all(right <= box for right in drawn.values())  # not cut off at the right edge
    # the heat-map's columns: the /retention table's names
    columns = ["1小时", "当天", "次日"] if zh else ["1 hour", "Same day", "Next day"]
    assert page.evaluate(f"{option % 'cohorts'}.xAxis[0].data") == columns
    assert set(svg_texts(page, "cohorts")) >= set(columns)
    assert (
        page.eval_on_selector_all("#sources th", "els => els.map(e => e.textContent)")[2:5]
        == columns
    )
    # the funnel: each step's name, its count and its share
    steps = page.evaluate(f"{option % 'funnel'}.series[0].data.map(d => d.name)")
    first, day1 = ("进群", "次日留存") if zh else ("Joined", "Stayed next day")
    assert len(steps) == 6
    assert (steps[0], steps[2]) == (first, day1)
    shown = svg_texts(page, "funnel")
    for name, s in zip(steps, insights["funnel"]["steps"], strict=True):
        assert f"{name} {s['users']} · {js_pct(s['share'])}" in shown
    # no id of the JSON answers anywhere a user can read
    charts = ("cohorts", "trends", "audience", "funnel", "hours")
    visible = "\n".join(
        [page.inner_text("body"), *(x for c in charts for x in svg_texts(page, c))]
    )
    assert not RAW_IDS.findall(visible)


def in_thread(coro: Any) -> None:
    """Playwright's sync API runs its own loop in this thread: the database write runs in
    another one."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()


def test_the_page_follows_the_group_language(
    signed_in: Page, demo: dict[str, Any], screens: Path
) -> None:
    from storage.repo import Repo

    async def set_language(lang: str) -> None:
        repo = await Repo.open(f"sqlite+aiosqlite:///{demo['db']}")
        try:
            [chat_id] = await repo.chat_ids(active_only=False)
            await repo.update_chat(chat_id, language=lang)
        finally:
            await repo.close()

    page = signed_in
    in_thread(set_language("en"))
    try:
        page.reload()
        page.wait_for_selector("body[data-loaded*='..']")
        assert page.inner_text("h2 >> nth=1") == "Retention by join day"
        assert page.inner_text("#apply") == "Show"
        check_names(page, "en")
        page.set_viewport_size({"width": 1200, "height": 900})
        page.screenshot(path=str(screens / "en-desktop.png"), full_page=True)
        page.locator("#kpis").screenshot(path=str(screens / "en-kpis.png"))
        page.locator("#trends").screenshot(path=str(screens / "en-trends.png"))
        page.locator("#funnel").screenshot(path=str(screens / "en-funnel.png"))
        page.set_viewport_size({"width": 400, "height": 860})
    finally:
        in_thread(set_language("zh"))


def test_dark_theme_and_telegram_theme_params(
    browser: Browser, demo: dict[str, Any], screens: Path
) -> None:
    dark = browser.new_context(viewport={"width": 400, "height": 860}, color_scheme="dark")
    page = dark.new_page()

    # a second login link is needed: the first one was used; the demo prints one only, so
    # sign this context in with the first context's session cookie
    dark.add_cookies(_session_cookies(browser, demo))
    page.goto(f"http://127.0.0.1:{demo['port']}/")
    page.click("#groups a")
    page.wait_for_selector("body[data-loaded*='..']")
    assert page.get_attribute("html", "data-theme") == "dark"
    bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert bg == "rgb(23, 33, 43)"
    page.screenshot(path=str(screens / "dark-phone.png"), full_page=True)
    # inside Telegram: themeParams (kept by the Mini App's entry page) win
    theme = {
        "bg_color": "#1c1c1d",
        "text_color": "#ffffff",
        "button_color": "#e0a100",
        "secondary_bg_color": "#2c2c2e",
        "hint_color": "#98989e",
        "link_color": "#ffb300",
    }
    page.evaluate(f"sessionStorage.setItem('tgTheme', {json.dumps(json.dumps(theme))})")
    page.reload()
    page.wait_for_selector("body[data-loaded*='..']")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(28, 28, 29)"
    assert page.evaluate("getComputedStyle(document.querySelector('#apply')).backgroundColor") == (
        "rgb(224, 161, 0)"
    )
    page.screenshot(path=str(screens / "telegram-theme-phone.png"), full_page=True)
    dark.close()


def _session_cookies(browser: Browser, demo: dict[str, Any]) -> list[Any]:
    for context in browser.contexts:
        cookies = [c for c in context.cookies() if c["name"] == "opsbot_session"]
        if cookies:
            return cookies
    pytest.fail("no signed-in context")


def test_a_used_login_link_is_refused_and_sigterm_stops_the_demo(
    browser: Browser, demo: dict[str, Any]
) -> None:
    context = browser.new_context()
    page = context.new_page()
    resp = page.goto(demo["link"])
    assert resp is not None
    assert resp.status == 401
    assert page.inner_text("#error")
    context.close()
    proc: subprocess.Popen[str] = demo["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_the_mini_app_signs_in_with_init_data_and_follows_theme_params(
    browser: Browser, demo: dict[str, Any], screens: Path, tmp_path: Path
) -> None:
    """Telegram opens /app?chat=ID with initData and themeParams in the URL fragment;
    `opsbot dashboard` (with the bot token; Telegram here is the fake Bot API) signs in."""
    from urllib.parse import quote

    from bot import synthetic
    from tests import tg
    from tests.botapi_server import TOKEN, FakeBotAPI
    from tests.web_helpers import sign_init_data

    api = FakeBotAPI().start()
    chat_id = int(f"-100{synthetic.GroupSpec().chat_id}")
    api.admins[chat_id] = [tg.member(tg.user(synthetic.HOST_BASE_ID, "Host 0"), "administrator")]
    port = free_port()
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[telegram]\ntoken = "{TOKEN}"\napi_base_url = "{api.base_url}"\n'
        f'[storage]\nurl = "sqlite:///{demo["db"]}"\n[dashboard]\nport = {port}\n'
    )
    cfg.chmod(0o600)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "dashboard", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        assert proc.stdout is not None
        assert "dashboard on" in proc.stdout.readline()
        theme = {
            "bg_color": "#212121",
            "text_color": "#ffffff",
            "button_color": "#8774e1",
            "secondary_bg_color": "#181818",
            "hint_color": "#aaaaaa",
            "link_color": "#8774e1",
            "button_text_color": "#ffffff",
        }
        fragment = (
            f"tgWebAppData={quote(sign_init_data(TOKEN, synthetic.HOST_BASE_ID))}"
            f"&tgWebAppVersion=8.0&tgWebAppPlatform=android"
            f"&tgWebAppThemeParams={quote(json.dumps(theme))}"
        )
        # the Telegram client's bridge on Android/iOS: the events the page posts to it
        context.add_init_script(
            "window.__events = []; window.TelegramWebviewProxy ="
            " {postEvent: function (type) { window.__events.push(type); }};"
        )
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/app?chat={chat_id}#{fragment}")
        page.wait_for_url(f"**/chats/{chat_id}")
        page.wait_for_selector("body[data-loaded*='..']", timeout=60_000)
        assert page.get_attribute("html", "data-theme") == "dark"
        bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert bg == "rgb(33, 33, 33)"
        assert shown_labels(page) == api_labels(
            page, f"/chats/{chat_id}", page.input_value("#from"), page.input_value("#to")
        )
        assert page.evaluate("window.__events") == ["web_app_ready", "web_app_expand"]
        page.screenshot(path=str(screens / "mini-app-android-dark.png"), full_page=True)
        # a Mini App opened with initData for someone else's account is not signed in
        stranger = context.browser.new_context() if context.browser else None
        assert stranger is not None
        other = stranger.new_page()
        forged = fragment.replace("tgWebAppData=", "tgWebAppData=x")
        other.goto(f"http://127.0.0.1:{port}/app?chat={chat_id}#{forged}")
        other.wait_for_function(
            "document.getElementById('status').textContent.includes('/dashboard')"
        )
        assert "/chats/" not in other.url
        stranger.close()
    finally:
        context.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
        api.stop()
