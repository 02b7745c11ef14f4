"""Growth commands in chat (/sources /funnel /referrals /hours /quiet), the referral_rate
target, the digest's top-source line and the sources CSV, through the real Application
and the fake Bot API server, on both databases; and the two charts' artists.

One hand-made history (Shanghai time, activation window 1 day), tracking from day -3 with
20 members already there:
  day -2  10:00 Alice joins by the host's link "poster"; 10:05 Bob by the same link and
          leaves at 10:35; 11:00 Alice adds Dan (a referral: Alice is a member);
          12:00 Carol joins on her own; 13:00 the host posts, 13:05 Alice replies to it
          (response level), 13:10 Dan replies to Alice (both interaction level)
  day -1  09:00 Erin joins on her own
So: sources direct (Carol, Erin), link:poster (Alice, Bob), added (Dan); one referral
(Dan, by Alice) among an audience of 20 + 5 = 25; quiet newcomers Carol then Erin.
"""

from __future__ import annotations

import asyncio
import csv
import html
import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from matplotlib.image import AxesImage
from matplotlib.text import Annotation, Text

from bot import charts, schedule
from bot.chat_text import telegram_len
from bot.cli import main
from bot.context import OpsApplication
from bot.parse import UsageError, parse_days
from bot.targets import parse_metric
from handlers.insights import quiet_html
from tests import tg
from tests.botapi_server import BOT_ID, FakeBotAPI, _after_entities, _html_error
from tests.e2e import bot_running, make_config, settle
from tests.test_e2e_commands import CHAT, GROUP, HOST, TZ, command, join, leave, local

BOT_USER = tg.user(BOT_ID, "opsbot", True)
ALICE, BOB, CAROL = tg.user(10, "Alice"), tg.user(11, "Bob"), tg.user(12, "Carol")
DAN, ERIN = tg.user(13, "Dan"), tg.user(14, "Erin <3 & co")
POSTER = tg.invite_link("https://t.me/+poster123", HOST, "poster")
_mid = iter(range(5000, 100000))


def day(days_ago: int) -> date:
    return datetime.now(TZ).date() - timedelta(days=days_ago)


def history() -> list[dict[str, Any]]:
    def by_link(user: dict[str, Any], ts: int) -> dict[str, Any]:
        return tg.chat_member(
            GROUP, user, ts, tg.member(user, "left"), tg.member(user, "member"), POSTER
        )

    post = tg.message(GROUP, next(_mid), local(2, 13), HOST, "Day 1: your goal?")["message"]
    alice = tg.message(GROUP, next(_mid), local(2, 13, 5), ALICE, "ship it", reply_to=post)
    dan = tg.message(GROUP, next(_mid), local(2, 13, 10), DAN, "me too", reply_to=alice["message"])
    return [
        tg.bot_added(GROUP, HOST, local(3, 8), BOT_USER),
        by_link(ALICE, local(2, 10)),
        by_link(BOB, local(2, 10, 5)),
        leave(BOB, local(2, 10, 35)),
        tg.chat_member(  # Alice adds Dan
            GROUP, ALICE, local(2, 11), tg.member(DAN, "left"), tg.member(DAN, "member")
        ),
        join(CAROL, local(2, 12)),
        {"message": post},
        alice,
        dan,
        join(ERIN, local(1, 9)),
    ]


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    server = FakeBotAPI().start()
    server.admins[CHAT] = [tg.member(HOST, "creator"), tg.member(BOT_USER, "administrator")]
    server.member_counts[CHAT] = 22  # 20 members, the creator and the bot
    server.chats[CHAT] = GROUP
    yield server
    server.stop()


@pytest.fixture
async def bot(api: FakeBotAPI, db_url: str) -> AsyncIterator[OpsApplication]:
    async with bot_running(make_config(api, db_url, activation_days=1)) as app:
        api.push(*history())
        await settle(api)
        yield app


async def sent(
    api: FakeBotAPI, *updates: dict[str, Any], method: str = "sendMessage"
) -> list[Any]:
    """The calls of `method` the updates caused."""
    before = len(api.calls_of(method))
    api.push(*updates)
    await settle(api)
    return [c for c in api.calls_of(method)[before:] if int(c.params["chat_id"]) != 424242]


async def replies(api: FakeBotAPI, *updates: dict[str, Any]) -> list[str]:
    calls = await sent(api, *updates)
    texts = [c.params["text"] for c in calls if int(c.params["chat_id"]) == CHAT]
    return [html.unescape(re.sub(r"</?pre>", "", text)) for text in texts]


def is_png(data: bytes) -> bool:
    return data.startswith(b"\x89PNG\r\n\x1a\n") and int.from_bytes(data[20:24], "big") >= 300


# ---- the commands ------------------------------------------------------------------------


async def test_sources_table_by_source_with_retention_and_activation(
    api: FakeBotAPI, bot: OpsApplication
) -> None:
    [text] = await replies(api, command("/sources 3", HOST))
    assert text.startswith(f"📈 Camp — 增长，{day(2)} 至 {day(0)}（Asia/Shanghai）")
    rows = [line.split() for line in text.splitlines()]
    table = {r[0]: r for r in rows if r and r[0] in ("direct", "link:poster", "added")}
    assert list(table) == ["direct", "link:poster", "added"]  # most joins, then by key
    # source, joins, 1h, day0, day1, activated (1 day)
    assert table["link:poster"][1:] == [
        "2",
        *("50.0%", "(1/2)") * 3,
        "50.0%",
        "(1/2)",
    ]
    assert table["direct"][1:] == [
        "2",
        *("100.0%", "(2/2)") * 2,
        "100.0%",
        "(1/1)",
        "+1…",  # Erin's next day is today: pending
        "0.0%",
        "(0/2)",
    ]
    assert table["added"][1:] == ["1", *("100.0%", "(1/1)") * 3, "0.0%", "(0/1)"]


async def test_referrals_count_a_members_add_not_a_hosts_link(
    api: FakeBotAPI, bot: OpsApplication
) -> None:
    [text] = await replies(api, command("/referrals 3", HOST))
    assert text.splitlines()[-1] == "转介绍：1 位成员带来 1 次进群；转介绍率 4.0%（成员 25）"
    await replies(api, command("/settings language en", HOST))
    [en] = await replies(api, command("/referrals 3", HOST))
    assert en.splitlines()[-1] == (
        "Referrals: 1 referred joins by 1 members; referral rate 4.0% (audience 25)"
    )


async def test_funnel_sends_a_png_and_the_nested_steps(
    api: FakeBotAPI, bot: OpsApplication
) -> None:
    before = len(api.calls_of("sendPhoto"))
    [text] = await replies(api, command("/funnel 3", HOST))
    [photo] = api.calls_of("sendPhoto")[before:]
    assert int(photo.params["chat_id"]) == CHAT
    assert is_png(photo.files["photo"])
    assert photo.params["caption"].startswith("📈 Camp")
    lines = text.splitlines()
    assert "漏斗（另有 1 人还在窗口内）" in lines
    steps = [line.split() for line in lines[-6:]]
    # Erin (day -1) is pending: her day1 checkpoint is tonight
    assert [s[1:] for s in steps] == [
        ["4", "100.0%"],
        ["3", "75.0%"],
        ["3", "75.0%"],
        ["1", "25.0%"],
        ["1", "25.0%"],
        ["1", "25.0%"],
    ]


async def test_hours_sends_a_heat_map_png_with_the_busiest_hour(
    api: FakeBotAPI, bot: OpsApplication
) -> None:
    [photo] = await sent(api, command("/hours 3", HOST), method="sendPhoto")
    assert int(photo.params["chat_id"]) == CHAT
    assert is_png(photo.files["photo"])
    weekday = ["周一", "周二", "周三", "周四", "周五", "周六", "周日"][day(2).weekday()]
    caption = photo.params["caption"]
    assert f"成员消息最多：{weekday} 13:00 (2)" in caption  # Alice's and Dan's replies
    assert (
        f"主持人消息回复最多：{weekday} 13:00 (1.0)" in caption
    )  # Alice only: Dan replied to her


async def test_quiet_goes_privately_with_links_to_the_members(
    api: FakeBotAPI, bot: OpsApplication
) -> None:
    calls = await sent(api, command("/quiet", HOST))
    private = [c for c in calls if int(c.params["chat_id"]) == 1]  # the admin
    group = [c.params["text"] for c in calls if int(c.params["chat_id"]) == CHAT]
    assert group == ["沉默新人名单已私聊发给你。"]
    [msg] = private
    assert msg.params["parse_mode"] == "HTML"
    body = msg.params["text"]
    carol = '<a href="tg://user?id=12">Carol</a>'
    erin = '<a href="tg://user?id=14">Erin &lt;3 &amp; co</a>'
    assert carol in body
    assert erin in body
    assert body.index(carol) < body.index(erin)  # oldest join first
    assert "：2 位" in body
    assert f"{day(2)} 12:00 进群" in body
    for active_or_gone in ("id=10", "id=11", "id=13"):  # Alice and Dan spoke, Bob left
        assert active_or_gone not in body


async def test_quiet_tells_the_admin_to_start_the_bot_first(
    api: FakeBotAPI, bot: OpsApplication
) -> None:
    api.forbidden_chats.add(1)  # the admin never opened a chat with the bot
    calls = await sent(api, command("/quiet 7", HOST))
    refused = [c for c in calls if int(c.params["chat_id"]) == 1]
    assert [c.status for c in refused] == [403]  # as Telegram: Forbidden, nothing sent
    group = [c.params["text"] for c in calls if int(c.params["chat_id"]) == CHAT]
    assert group == ["请先私聊我并点击「开始」，然后再试一次 /quiet。"]


@pytest.mark.parametrize("name", ["sources", "funnel", "referrals", "hours", "quiet"])
async def test_non_admins_are_refused(api: FakeBotAPI, bot: OpsApplication, name: str) -> None:
    calls = await sent(api, command(f"/{name}", ALICE))
    assert [c.params["text"] for c in calls] == ["只有本群管理员可以使用这个命令。"]
    assert not api.calls_of("sendPhoto")


@pytest.mark.parametrize("name", ["sources", "funnel", "referrals", "hours", "quiet"])
async def test_bad_days_get_the_usage_line(
    api: FakeBotAPI, bot: OpsApplication, name: str
) -> None:
    for arg in ("abc", "0", "91", "3 4", "１２"):  # the last: full-width digits
        calls = await sent(api, command(f"/{name} {arg}", HOST))
        [text] = [c.params["text"] for c in calls]
        assert f"用法：/{name} [天数 1-90]" in text
        assert "不是 1 到 90 之间的天数" in text
    assert not api.calls_of("sendPhoto")
    assert not api.calls_of("sendDocument")


async def test_public_commands_open_the_numbers_but_never_the_quiet_list(
    api: FakeBotAPI, db_url: str
) -> None:
    async with bot_running(make_config(api, db_url, public_commands=True)):
        api.push(*history())
        await settle(api)
        [sources] = await replies(api, command("/sources 3", ALICE))
        assert "link:poster" in sources
        calls = await sent(api, command("/quiet", ALICE))
        assert [c.params["text"] for c in calls] == ["只有本群管理员可以使用这个命令。"]


async def test_commands_answer_in_english(api: FakeBotAPI, bot: OpsApplication) -> None:
    await replies(api, command("/settings language en", HOST))
    [bad] = await replies(api, command("/hours x", HOST))
    assert "Usage: /hours [days 1-90]" in bad
    [sources] = await replies(api, command("/sources 3", HOST))
    assert "Sources (joins, retention, activated)" in sources
    calls = await sent(api, command("/quiet", HOST))
    assert [c.params["text"] for c in calls if int(c.params["chat_id"]) == CHAT] == [
        "I sent the quiet newcomers to you in a private chat."
    ]
    [private] = [c.params["text"] for c in calls if int(c.params["chat_id"]) == 1]
    assert "Quiet newcomers of Camp" in private
    assert f"joined {day(1)} 09:00" in private


def test_quiet_list_is_valid_html_cut_on_whole_lines_to_fit_one_message() -> None:
    quiet = [
        {
            "user_id": 1000 + i,
            "name": f"<b>Ann & {i}</b> " * 4,
            "username": None,
            "joined": "2026-11-29T10:00:00Z",
        }
        for i in range(300)
    ]
    report = {
        "from": "2026-11-23",
        "to": "2026-11-29",
        "timezone": "Asia/Shanghai",
        "quiet": quiet,
    }
    text = quiet_html(report, "en", "Camp", TZ)
    assert _html_error(text, "HTML") is None  # names escaped: Telegram parses it
    shown = _after_entities(text, "HTML")
    assert telegram_len(shown) <= 4096
    lines = shown.splitlines()
    listed = len(lines) - 2  # the head line and the "more" line
    assert 10 < listed < 300
    assert lines[-1] == f"… and {300 - listed} more (try fewer days)"
    assert lines[1].startswith("• <b>Ann & 0</b>")
    assert '<a href="tg://user?id=1000">&lt;b&gt;Ann &amp; 0' in text


# ---- referral_rate as a target ---------------------------------------------------------------


def test_referral_rate_and_its_aliases_parse() -> None:
    assert parse_metric("referral_rate") == "referral_rate"
    assert parse_metric("referral") == "referral_rate"
    assert parse_metric("转介绍率") == "referral_rate"
    with pytest.raises(UsageError):
        parse_days(["91"], "usage_quiet")


async def test_referral_rate_target_is_set_shown_and_alerts_once(
    api: FakeBotAPI, bot: OpsApplication
) -> None:
    [done] = await replies(api, command("/settarget 转介绍率 10% last 7", HOST))
    assert done.startswith("目标已设定：转介绍率 ≥ 10%")
    [targets] = await replies(api, command("/targets", HOST))
    # last 7 days ending yesterday: Dan brought by Alice; audience 20 + 5 from tracking on
    line = next(x for x in targets.splitlines() if "转介绍率" in x)
    assert line.startswith("❌ 转介绍率 ≥ 10%: 4.0% ")
    assert line.endswith(f"({day(7)}..{day(1)})")
    now = datetime.now(UTC)
    assert await schedule.send_alerts(bot, CHAT, now) == 1
    assert await schedule.send_alerts(bot, CHAT, now + timedelta(minutes=15)) == 0
    [alert] = [
        c.params["text"]
        for c in api.calls_of("sendMessage")
        if int(c.params["chat_id"]) == CHAT and c.params["text"].startswith("⚠️")
    ]
    assert alert.startswith("⚠️ 转介绍率 低于目标：4.0%，目标 10%（差 6.0 个百分点）")
    assert "样本：25" in alert
    [bad] = await replies(api, command("/settarget referral 10% 9-2", HOST))
    assert "用法：/settarget" in bad
    [photo] = await sent(api, command("/trend referral 7", HOST), method="sendPhoto")
    assert is_png(photo.files["photo"])
    assert photo.params["caption"] == "转介绍率，最近 7 天"


# ---- the digest's line -------------------------------------------------------------------


async def test_digest_names_the_top_source_with_its_same_day_retention(
    api: FakeBotAPI, bot: OpsApplication
) -> None:
    [report] = await replies(api, command(f"/report {day(2)}", HOST))
    assert "最大来源：link:poster（2 人进群），当天留存 50.0% (1/2)" in report
    [quiet_day] = await replies(api, command(f"/report {day(3)}", HOST))
    assert "最大来源：当天没有人进群" in quiet_day
    await schedule.send_digest(bot, CHAT, datetime.now(UTC))  # unless sent at start-up
    [digest] = [
        c.params["text"]
        for c in api.calls_of("sendMessage")
        if int(c.params["chat_id"]) == CHAT
        and c.params["text"].startswith("📊")
        and str(day(1)) in c.params["text"]
    ]
    assert "最大来源：direct（1 人进群），当天留存 100.0% (1/1)" in digest  # Erin, yesterday
    await replies(api, command("/settings language en", HOST))
    [en] = await replies(api, command(f"/report {day(2)}", HOST))
    assert "Top source: link:poster (2 joins), same-day retention 50.0% (1/2)" in en


# ---- the sources CSV -----------------------------------------------------------------------


SOURCES_HEAD = [
    "day",
    "source",
    "joins",
    "retained_1h",
    "matured_1h",
    "retained_day0",
    "matured_day0",
    "retained_day1",
    "matured_day1",
    "activated_users",
    "activated_matured",
]


def sources_expected() -> list[list[str]]:
    d2, d1 = str(day(2)), str(day(1))
    return [
        SOURCES_HEAD,
        [d2, "link:poster", "2", "1", "2", "1", "2", "1", "2", "1", "2"],  # Bob left at 30 min
        [d2, "added", "1", "1", "1", "1", "1", "1", "1", "0", "1"],  # Dan only interacted
        [d2, "direct", "1", "1", "1", "1", "1", "1", "1", "0", "1"],  # Carol
        [d1, "direct", "1", "1", "1", "1", "1", "0", "0", "0", "1"],  # Erin: day1 tonight
    ]


def csv_rows(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")  # the BOM: Excel reads it as UTF-8
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


async def test_export_adds_sources_per_day(
    api: FakeBotAPI, bot: OpsApplication, db_url: str, tmp_path: Path
) -> None:
    await replies(api, command("/export 7", HOST))
    [sources] = [
        data
        for d in api.calls_of("sendDocument")
        if int(d.params["chat_id"]) == 1
        for name, data in d.files.items()
        if data.startswith(b"\xef\xbb\xbfday,source,")
    ]
    assert csv_rows(sources) == sources_expected()
    # and the same file from `opsbot export`
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[storage]\nurl = "{db_url}"\n[defaults]\nactivation_days = 1\n')
    out = tmp_path / "csv"
    args = ["export", "--chat", str(CHAT), "--days", "7", "--out", str(out), "--config", str(cfg)]
    assert await asyncio.to_thread(main, args) == 0
    written = (out / f"opsbot_{CHAT}_sources.csv").read_bytes()
    assert csv_rows(written) == sources_expected()


# ---- the charts' artists -------------------------------------------------------------------


def _texts(fig: Any, gid: str) -> list[str]:
    return [a.get_text() for a in fig.findobj(Text) if a.get_gid() == gid]


@pytest.mark.parametrize(("lang", "title"), [("en", "Member messages by hour")])
def test_hours_figure_cells_and_title(lang: str, title: str) -> None:
    messages = [[0] * 24 for _ in range(7)]
    messages[2][13] = 7
    messages[6][0] = 3
    fig = charts.hours_figure(messages, lang, "Camp", date(2026, 11, 1), date(2026, 11, 30))
    assert _texts(fig, "title") == [title]
    assert _texts(fig, "subtitle") == ["Camp · 2026-11-01 – 2026-11-30"]
    [image] = [a for a in fig.findobj(AxesImage) if a.get_gid() == "cells"]
    assert image.get_array().tolist() == messages
    values = [
        (a.get_position(), a.get_text()) for a in fig.findobj(Text) if a.get_gid() == "cell-value"
    ]
    assert sorted(values) == [((0, 6), "3"), ((13, 2), "7")]
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "Mon",
        "Tue",
        "Wed",
        "Thu",
        "Fri",
        "Sat",
        "Sun",
    ]
    assert charts.png(fig).startswith(b"\x89PNG")


def test_charts_are_titled_in_chinese() -> None:
    if charts.cjk_font() is None:
        pytest.skip("no CJK font: charts fall back to English")
    fig = charts.hours_figure([[0] * 24] * 7, "zh", "营", date(2026, 11, 1), date(2026, 11, 2))
    assert _texts(fig, "title") == ["成员消息时段分布"]
    fig = charts.funnel_figure(
        [("进群", 0, None)], 0, "zh", "营", date(2026, 11, 1), date(2026, 11, 2)
    )
    assert _texts(fig, "title") == ["新人转化漏斗"]
    assert _texts(fig, "no-data") == ["暂无数据"]


def test_funnel_figure_bars_and_values() -> None:
    steps = [("joined", 4, 1.0), ("stayed 1 hour", 3, 0.75), ("referred someone", 1, 0.25)]
    fig = charts.funnel_figure(steps, 2, "en", "Camp", date(2026, 11, 1), date(2026, 11, 3))
    assert _texts(fig, "title") == ["Newcomer funnel"]
    ax = fig.axes[0]
    bars = [p for c in ax.containers for p in c]
    assert [b.get_width() for b in bars] == [4, 3, 1]
    labels = [a.get_text() for a in fig.findobj(Annotation) if a.get_gid() == "step-value"]
    assert labels == ["4 (100.0%)", "3 (75.0%)", "1 (25.0%)"]
    assert [t.get_text() for t in ax.get_yticklabels()] == [s for s, _, _ in steps]
    assert _texts(fig, "pending") == ["+2 still in their activation window, not counted"]
