"""Config contract (SPEC 10): good files load; each bad key gives one line and exit code 2."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_loads_with_documented_values() -> None:
    cfg = load_config(str(ROOT / "config.example.toml"))
    assert cfg.storage_url == "sqlite+aiosqlite:///opsbot.db"
    assert cfg.defaults.timezone == "Asia/Shanghai"
    assert cfg.defaults.digest_time == time(9, 0)
    assert cfg.defaults.discussion_window_s == 600
    targets = {t.metric: (t.value, t.range) for t in cfg.defaults.targets}
    assert targets == {"retention_day1": (0.8, None), "response_rate": (0.2, "last 7")}


def test_group_section_inherits_defaults(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        '[defaults]\ntimezone = "Europe/Berlin"\nlanguage = "en"\n'
        '[groups."-100123"]\nhosts = [7]\ncampaign_start = "2026-11-01"\n'
        '[groups."-100123".targets]\n"次日留存" = 0.75\n'
    )
    cfg = load_config(str(f))
    group = cfg.for_chat(-100123)
    assert (group.timezone, group.language, group.hosts) == ("Europe/Berlin", "en", {7})
    assert group.targets[0].metric == "retention_day1"
    assert group.targets[0].value == 0.75
    assert cfg.for_chat(-5).hosts == frozenset()


def test_token_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSBOT_TOKEN", "42:abc")
    assert load_config(None).token == "42:abc"


def test_plain_urls_map_to_async_drivers(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[storage]\nurl = "postgresql://u@h/db"\n')
    assert load_config(str(f)).storage_url == "postgresql+asyncpg://u@h/db"


BAD = [
    ('[telegram]\ntokn = "1:a"\n', "telegram.tokn: unknown key"),
    ('[defaults]\ntimezone = "Mars/Base"\n', "defaults.timezone: unknown timezone"),
    ('[defaults]\ndigest_time = "25:00"\n', "defaults.digest_time: expected a time"),
    ('[storage]\nurl = "mysql://x"\n', "storage.url: unsupported database URL"),
    ('[telegram]\napi_base_url = "ftp://x"\n', "telegram.api_base_url: expected an http(s) URL"),
    ('[defaults]\nlanguage = "fr"\n', "defaults.language: expected"),
    ('[defaults]\nwindows = ["2d"]\n', "defaults.windows: expected a list"),
    (
        "[defaults.targets]\nretention_week = 0.5\n",
        "defaults.targets.retention_week: unknown metric",
    ),
    (
        '[defaults.targets]\nresponse_rate = "120%"\n',
        "defaults.targets.response_rate: a rate must be",
    ),
    ('[groups."abc"]\n', "groups.abc: expected a numeric chat id"),
    ('[groups."-1"]\nfoo = 1\n', 'groups."-1".foo: unknown key'),
    ('[telegram]\nmode = "webhook"\n', "telegram.webhook_url: required"),
    ("not toml at all [", "not valid TOML"),
]


@pytest.mark.parametrize(("body", "message"), BAD)
def test_bad_config_gives_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, message: str
) -> None:
    f = tmp_path / "c.toml"
    f.write_text(body)
    with pytest.raises(ConfigError, match=message.split(":")[0]):
        load_config(str(f))
    assert main(["db", "status", "--config", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err


def test_missing_config_file_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml not found" in capsys.readouterr().err


def test_run_without_token_points_at_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run"]) == 2
    assert "telegram.token" in capsys.readouterr().err
