"""Command argument parsers: every form gives a valid result or a UsageError, never a crash."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.parse import TargetChange, UsageError, parse_days, parse_settarget, parse_setting


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["次日留存", "80%"], TargetChange("retention_day1", 0.8, None)),
        (["response_rate", "20%", "1-7"], TargetChange("response_rate", 0.2, "1-7")),
        (["响应率", "0.2"], TargetChange("response_rate", 0.2, "last 7")),
        (["interaction", "15%", "last", "14"], TargetChange("interaction_rate", 0.15, "last 14")),
        (["retention_1h", "off"], TargetChange("retention_1h", None, None)),
        (["retention_day7", "50%"], TargetChange("retention_day7", 0.5, None)),
        (["retention_48h", "50"], TargetChange("retention_48h", 0.5, None)),
    ],
)
def test_settarget_forms(args: list[str], expected: TargetChange) -> None:
    assert parse_settarget(args) == expected


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["next_day"],
        ["weekly", "80%"],
        ["next_day", "180%"],
        ["next_day", "abc"],
        ["next_day", "80%", "1-7"],
        ["response", "20%", "7-1"],
        ["response", "20%", "x"],
    ],
)
def test_settarget_bad_forms(args: list[str]) -> None:
    with pytest.raises(UsageError) as info:
        parse_settarget(args)
    assert info.value.key == "usage_settarget"


def test_days() -> None:
    assert parse_days([], "u") == 7
    assert parse_days(["14"], "u") == 14
    for bad in (["0"], ["91"], ["-3"], ["x"], ["1", "2"]):
        with pytest.raises(UsageError):
            parse_days(bad, "u")


def test_settings_forms() -> None:
    assert parse_setting(["timezone", "Europe/Berlin"]) == ("timezone", "Europe/Berlin")
    assert parse_setting(["digest_time", "8:30"]) == ("digest_time", "08:30")
    assert parse_setting(["digest_to", "admins"]) == ("digest_to", "admins")
    for bad in (["timezone", "Mars/X"], ["language", "fr"], ["colour", "red"], ["digest_time"]):
        with pytest.raises(UsageError):
            parse_setting(bad)


@settings(max_examples=300)
@given(st.lists(st.text(max_size=12), max_size=4))
def test_parsers_fuzzed(args: list[str]) -> None:
    for parser in (parse_settarget, parse_setting, lambda a: parse_days(a, "u")):
        with contextlib.suppress(UsageError):
            parser(args)
