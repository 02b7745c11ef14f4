"""No command input, and no stored value, stops a command, the digest or alerts (issue 17).

Through the real Application and the fake Bot API server, which refuses texts over
Telegram's 4,096 characters as Telegram does: each bad input gets its usage line, with the
input quoted short, and nothing is stored.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import schedule, service
from bot.chat_text import fit, quote, telegram_len
from bot.cli import main
from bot.context import OpsApplication
from bot.importer import ImportSummary
from bot.parse import UsageError, parse_days, parse_settarget, parse_setting
from bot.reports import metric_label
from storage.repo import Repo
from tests import tg
from tests.botapi_server import FakeBotAPI
from tests.e2e import settle
from tests.test_e2e_commands import (
    BOT_USER,
    CHAT,
    GROUP,
    HOST,
    TZ,
    command,
    local,
    replies,
)
from tests.test_e2e_commands import api as camp_api
from tests.test_e2e_commands import bot as camp_bot

api, bot = camp_api, camp_bot  # the same fixtures: Camp, its host, four joins and a leave

USAGE_RETENTION = "用法：/retention [天数 1-90]，例如 /retention 14"
USAGE_REPORT = "用法：/report [YYYY-MM-DD]，2013-01-01 到今天之间的一天，例如 /report 2026-11-20"
USAGE_TREND = (
    "用法：/trend <指标> [天数 1-90]，例如 /trend 次日留存 30（留存窗口最长 day30 或 720h）"
)
USAGE_SETTARGET = (
    "用法：/settarget <指标> <目标值 0-100%|off> [last N | A-B，天数 1-366]，"
    "例如 /settarget 次日留存 80% 或 /settarget 响应率 20% 1-7（留存窗口最长 day30 或 720h）"
)
USAGE_SETTINGS = (
    "用法：/settings [timezone <IANA 时区> | language zh|en | digest_time HH:MM | "
    "digest_to group|admins|<chat id>]"
)
UNKNOWN_METRIC = (
    "。可用：retention_1h, retention_day0, retention_day1, retention_<窗口>, response_rate, "
    "interaction_rate, referral_rate"
    "（别名：1小时留存, 当天留存, 次日留存, 响应率, 互动率, 转介绍率）"
)
NINES = "retention_day" + "9" * 30  # 43 characters: longer than chat_targets.metric (32)
ONES = "-100" + "1" * 36  # 40 characters: longer than chats.digest_to (32)

BAD_INPUTS = [
    (
        "/settarget " + "x" * 4000 + " 50%",
        "未知指标 “" + "x" * 32 + "…”" + UNKNOWN_METRIC + "\n" + USAGE_SETTARGET,
    ),
    ("/retention ²", "“²” 不是 1 到 90 之间的天数。\n" + USAGE_RETENTION),
    (
        "/retention " + "1" * 10_000,
        "“" + "1" * 32 + "…” 不是 1 到 90 之间的天数。\n" + USAGE_RETENTION,
    ),
    ("/retention 91", "“91” 不是 1 到 90 之间的天数。\n" + USAGE_RETENTION),
    (
        "/report 0001-01-01",
        "“0001-01-01” 不是 2013-01-01 以后的日期（格式 YYYY-MM-DD）。\n" + USAGE_REPORT,
    ),
    (
        "/trend retention_day99999999999",
        "“retention_day99999999999”：留存窗口最长为 day30 或 720h。\n" + USAGE_TREND,
    ),
    ("/trend retention_721h", "“retention_721h”：留存窗口最长为 day30 或 720h。\n" + USAGE_TREND),
    (
        "/settarget response_rate 20% last 99999999",
        "“last 99999999”：范围应为 last N（N 为 1 到 366）或 A-B（活动第 A 到第 B 天，"
        "1 ≤ A ≤ B ≤ 366）。\n" + USAGE_SETTARGET,
    ),
    (
        "/settarget response_rate 20% 1-367",
        "“1-367”：范围应为 last N（N 为 1 到 366）或 A-B（活动第 A 到第 B 天，"
        "1 ≤ A ≤ B ≤ 366）。\n" + USAGE_SETTARGET,
    ),
    (
        "/settarget retention_day999999999 50%",
        "“retention_day999999999”：留存窗口最长为 day30 或 720h。\n" + USAGE_SETTARGET,
    ),
    (
        f"/settarget {NINES} 50%",
        f"“{NINES[:32]}…”：留存窗口最长为 day30 或 720h。\n" + USAGE_SETTARGET,
    ),
    ("/settarget next_day 1e999%", "“1e999%” 不是 0% 到 100% 之间的目标值。\n" + USAGE_SETTARGET),
    (
        "/settings timezone " + "Z" * 300,
        "“"
        + "Z" * 32
        + "…” 不是已知的时区，请使用 IANA 名称，例如 Asia/Shanghai。\n"
        + USAGE_SETTINGS,
    ),
    (
        f"/settings digest_to {ONES}",
        f"“{ONES[:32]}…”：digest_to 应为 group、admins 或一个 Telegram chat id。\n"
        + USAGE_SETTINGS,
    ),
    (
        "/settings digest_to 0",
        "“0”：digest_to 应为 group、admins 或一个 Telegram chat id。\n" + USAGE_SETTINGS,
    ),
]


def repo_of(app: OpsApplication) -> Repo:
    repo: Repo = app.bot_data["repo"]
    return repo


async def stored_state(repo: Repo) -> tuple[object, ...]:
    info = await repo.chat(CHAT)
    assert info is not None
    targets = await repo.chat_targets(CHAT)
    return targets, info.timezone, info.language, info.digest_time, info.digest_to


@pytest.mark.parametrize(("text", "expected"), BAD_INPUTS, ids=lambda v: str(v)[:40])
async def test_bad_input_gets_its_usage_line_and_changes_nothing(
    api: FakeBotAPI, bot: OpsApplication, text: str, expected: str
) -> None:
    before = await stored_state(repo_of(bot))
    sent = await replies(api, command(text, HOST))
    assert sent == [expected]
    assert await stored_state(repo_of(bot)) == before
    assert all(c.status == 200 for c in api.calls)  # nothing refused by the server


async def test_report_of_a_day_not_begun_is_one_clear_line(
    api: FakeBotAPI, bot: OpsApplication
) -> None:
    await replies(api, command("/settarget next_day 80%", HOST))
    yesterday = (datetime.now(TZ).date() - timedelta(days=1)).isoformat()
    tomorrow = (datetime.now(TZ).date() + timedelta(days=1)).isoformat()
    for day in ("9999-12-31", tomorrow):
        [text] = await replies(api, command(f"/report {day}", HOST))
        assert text == (
            f"{day} 还没有开始（Asia/Shanghai），没有可报告的数据。"
            f"最近一个完整的日子是 {yesterday}。"
        )
    [today] = await replies(api, command(f"/report {datetime.now(TZ).date()}", HOST))
    assert today.startswith("<pre>📊 Camp")


async def test_replies_are_cut_to_telegram_s_limit(api: FakeBotAPI, bot: OpsApplication) -> None:
    # 300 admins with long names: the /hosts listing is far over 4,096 characters
    admins = [tg.member(tg.user(5000 + i, "N" * 60), "administrator") for i in range(300)]
    api.admins[CHAT] += admins
    api.push(
        tg.chat_member(
            GROUP,
            HOST,
            local(0, 0, 1),
            tg.member(BOT_USER, "administrator"),
            tg.member(BOT_USER, "administrator"),
            mine=True,
        )
    )
    await settle(api)
    bot.bot_data["host_cache"].entries.clear()
    [listing] = await replies(api, command("/hosts", HOST))
    assert telegram_len(listing) == 4096
    assert listing.endswith("…")
    assert listing.startswith("群主/管理员")
    assert all(c.status == 200 for c in api.calls_of("sendMessage"))


def test_fit_counts_as_telegram_does() -> None:
    assert fit("a" * 4096) == "a" * 4096
    assert fit("a" * 5000) == "a" * 4095 + "…"
    emoji = fit("😀" * 3000)  # two UTF-16 units each
    assert telegram_len(emoji) <= 4096
    assert emoji.endswith("…")
    assert fit("说" * 2000, 1024) == "说" * 1023 + "…"
    assert quote("a\nb  c") == "“a b c”"
    assert quote("x" * 33) == "“" + "x" * 32 + "…”"


@pytest.fixture
def fresh_skip_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "_skipped", set())


async def test_stored_values_that_no_longer_parse_are_skipped(
    api: FakeBotAPI,
    bot: OpsApplication,
    fresh_skip_log: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Rows written before today's bounds (or by hand) never break /targets, /report, the
    digest or alerts: each is left out, with one log line."""
    repo, now = repo_of(bot), datetime.now(UTC)
    await repo.set_chat_target(CHAT, "retention_day999999999", 0.5, None, 1, now)
    await repo.set_chat_target(CHAT, "response_rate", 0.2, "last 99999999", 1, now)
    await repo.set_chat_target(CHAT, "interaction_rate", 1.5, "last 7", 1, now)
    await repo.set_chat_target(CHAT, "retention_1h", 0.8, None, 1, now)
    await repo.update_chat(
        CHAT, timezone="Mars/Olympus", language="xx", digest_time="99:99", digest_to="chat!"
    )
    caplog.set_level(logging.WARNING, logger="bot.service")
    for _ in range(2):
        [targets] = await replies(api, command("/targets", HOST))
        assert "1小时留存 ≥ 80%" in targets
        assert "留存 ≥ 50%" not in targets
        [report] = await replies(api, command("/report", HOST))
        assert report.startswith("<pre>📊 Camp")
        [settings] = await replies(api, command("/settings", HOST))
        assert "timezone: Asia/Shanghai" in settings
    assert await schedule.send_alerts(bot, CHAT, now) == 0
    jq = bot.job_queue
    assert jq is not None
    [job] = jq.get_jobs_by_name(f"digest:{CHAT}")
    before = len(api.calls_of("sendMessage"))
    await job.run(bot)
    [digest] = [c.params["text"] for c in api.calls_of("sendMessage")[before:]]
    assert digest.startswith("📊 Camp")
    assert "1小时留存 ≥ 80%" in digest
    skipped = sorted(r.getMessage() for r in caplog.records if "does not parse" in r.getMessage())
    assert skipped == sorted(
        [f"chat {CHAT}: stored target does not parse; left out"] * 3
        + [
            f"chat {CHAT}: stored setting {column} does not parse; left out"
            for column in ("timezone", "language", "digest_time", "digest_to")
        ]
    )
    assert not any("Mars" in r.getMessage() for r in caplog.records)  # never the value


async def test_targets_and_digest_name_metrics_in_the_group_s_language(
    api: FakeBotAPI, bot: OpsApplication
) -> None:
    await replies(api, command("/settarget 1h 80%", HOST), command("/settarget 响应率 20%", HOST))
    day = (datetime.now(TZ).date() - timedelta(days=1)).isoformat()
    [zh] = await replies(api, command("/targets", HOST))
    assert f"✅ 1小时留存 ≥ 80%: 100.0% ↑50.0 个百分点 ({day})" in zh
    assert "响应率 ≥ 20%" in zh
    assert "response_rate" not in zh
    assert "retention_1h" not in zh
    [report] = await replies(api, command("/report", HOST))  # the digest, on demand
    assert f"  ✅ 1小时留存 ≥ 80%: 100.0% ↑50.0 个百分点 ({day})" in report
    assert "response_rate" not in report

    [saved] = await replies(api, command("/settings language en", HOST))
    assert saved == "Saved: language = en"
    [en] = await replies(api, command("/targets", HOST))
    assert f"✅ 1-hour retention ≥ 80%: 100.0% ↑50.0 pp ({day})" in en
    assert "Response rate ≥ 20%" in en
    before = len(api.calls_of("sendMessage"))
    assert await schedule.send_digest(bot, CHAT, datetime.now(UTC))
    [digest] = [c.params["text"] for c in api.calls_of("sendMessage")[before:]]
    assert f"  ✅ 1-hour retention ≥ 80%: 100.0% ↑50.0 pp ({day})" in digest
    assert "  1 hour: 100.0% (1/1)" in digest
    assert "response_rate" not in digest
    [done] = await replies(api, command("/settarget next_day off", HOST))
    assert done == "Target switched off: Next-day retention"
    [usage] = await replies(api, command("/settarget retention_day31 50%", HOST))
    assert usage == (
        "“retention_day31”: a retention window is at most day30 or 720h.\n"
        "Usage: /settarget <metric> <value 0-100%|off> [last N | A-B, days 1-366], "
        "e.g. /settarget next_day 80% or /settarget response_rate 20% 1-7 "
        "(retention windows up to day30 or 720h)"
    )


async def test_retention_headers_in_chinese(api: FakeBotAPI, bot: OpsApplication) -> None:
    [text] = await replies(api, command("/retention 3", HOST))
    header = text.removeprefix("<pre>").splitlines()[1]
    assert header.split() == ["日期", "进群", "1小时", "当天", "次日"]


def test_metric_labels() -> None:
    assert metric_label("zh", "retention_day1") == "次日留存"
    assert metric_label("en", "retention_day7") == "Day-7 retention"
    assert metric_label("zh", "retention_48h") == "48小时留存"
    assert metric_label("en", "interaction_rate") == "Interaction rate"


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["retention_day31", "50%"], "bad_window"),
        (["retention_day030", "50%"], ""),  # day030 is day30
        (["response", "20%", "last", "367"], "bad_range"),
        (["response", "20%", "last", "٣"], "bad_range"),  # digits, but not ASCII ones
    ],
)
def test_settarget_bounds(args: list[str], reason: str) -> None:
    if not reason:
        assert parse_settarget(args).metric == "retention_day30"
        return
    with pytest.raises(UsageError) as info:
        parse_settarget(args)
    assert info.value.reason == reason


def test_days_refuse_what_int_cannot_read() -> None:
    for bad in ("²", "٣", "9" * 5000, "0"):
        with pytest.raises(UsageError):
            parse_days([bad], "u")
    assert parse_days(["007"], "u") == 7


CONFIG_BOUNDS = [
    ('[defaults]\nwindows = ["day31"]\n', "defaults.windows: window 'day31': at most day30"),
    ('[defaults]\nwindows = ["721h"]\n', "defaults.windows: window '721h': at most day30"),
    (
        "[defaults.targets]\nretention_day99999 = 0.5\n",
        "defaults.targets.retention_day99999: window 'day99999': at most day30 or 720h",
    ),
    (
        '[defaults.targets.response_rate]\nvalue = 0.2\nrange = "last 99999999"\n',
        "defaults.targets.response_rate.range: range 'last 99999999': expected",
    ),
    ('[defaults]\ndiscussion_window = "99999999h"\n', "defaults.discussion_window: expected"),
    ("[defaults]\nalert_interval = 99999999999\n", "defaults.alert_interval: expected"),
    ('[defaults]\ndigest_to = "-1001111111111111111111"\n', "defaults.digest_to: expected"),
    ('[defaults]\ntimezone = "' + "Z" * 300 + '"\n', "defaults.timezone: unknown timezone"),
    ('[groups."-1"]\ncampaign_start = "9999-12-31"\n', 'groups."-1".campaign_start: expected'),
    ("[storage]\nretention_days = 99999999999\n", "storage.retention_days: expected"),
]


@pytest.mark.parametrize(("body", "message"), CONFIG_BOUNDS, ids=lambda v: str(v)[:30])
def test_config_bounds_name_the_key(
    tmp_path: Any, capsys: pytest.CaptureFixture[str], body: str, message: str
) -> None:
    f = tmp_path / "c.toml"
    f.write_text(body)
    assert main(["db", "status", "--config", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1
    assert len(err) < 400


def test_import_summary_counts_members_in_english() -> None:
    one = ImportSummary(-1001, "Camp", baseline=1).text().splitlines()
    assert "baseline  1 member before the first event (tracking from - UTC)" in one
    two = ImportSummary(-1001, "Camp", baseline=2).text().splitlines()
    assert "baseline  2 members before the first event (tracking from - UTC)" in two


async def test_group_picker_button_data_fits_64_bytes(
    api: FakeBotAPI, bot: OpsApplication
) -> None:
    private = {"id": 1, "type": "private", "first_name": "Host"}
    api.push(command("/settarget 次日留存 " + "八十" * 30, HOST, chat=private))
    await settle(api)
    [picker] = [c for c in api.calls_of("sendMessage") if int(c.params["chat_id"]) == 1]
    assert picker.status == 200
    [[button]] = picker.params["reply_markup"]["inline_keyboard"]
    data = button["callback_data"]
    assert len(data.encode()) <= 64
    assert data.startswith(f"pick:settarget:{CHAT}:次日留存 八十")


WORDS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["retention_day", "retention_", "last", "-", "%", "h", "day", "off"]),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.from_regex(r"retention_(day[0-9]{1,12}|[0-9]{1,12}h)", fullmatch=True),
    st.from_regex(r"[0-9]{1,12}(-[0-9]{1,12})?%?", fullmatch=True),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(WORDS, max_size=5))
def test_any_settarget_either_refuses_or_fits_storage_and_reads_back(args: list[str]) -> None:
    """What /settarget accepts fits its columns (metric 32, range 16) and reads back as the
    same target; anything else is a UsageError."""
    try:
        change = parse_settarget(args)
    except UsageError:
        return
    assert len(change.metric) <= 32
    assert change.range is None or len(change.range) <= 16
    back = service.stored_target(change.metric, change.value, change.range)
    assert back is None or (back.metric, back.value, back.range) == (
        change.metric,
        change.value,
        change.range,
    )


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["timezone", "language", "digest_time", "digest_to"]), WORDS)
def test_any_setting_either_refuses_or_fits_its_column(name: str, value: str) -> None:
    try:
        column, stored = parse_setting([name, value])
    except UsageError:
        return
    assert (
        len(stored) <= {"timezone": 64, "language": 8, "digest_time": 5, "digest_to": 32}[column]
    )
