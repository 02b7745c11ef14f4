"""Fuzzing the command line (issue 17): generated argument lists for every subcommand.

Each run succeeds, or exits 1 or 2 with a short message; none prints a traceback, and
none reaches the last-resort handler (that would be a case nobody handled). `run` and
`check` are fuzzed with a config that has no token, so they end before any network: a
bot that starts would poll Telegram until stopped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.cli import main
from tests.test_import import camp_day, export

VALUE_FLAGS = {
    "run": [],
    "db": [],
    "report": ["--chat", "--date"],
    "import": ["--chat-id", "--export-timezone", "--host", "--bot", "--linked-channel"],
    "export": ["--chat", "--days", "--out"],
    "chats": [],
    "demo": ["--out"],
    "check": [],
    "insights": ["--chat", "--from", "--to", "--days"],
}
WORDS = {  # switches and positionals
    "run": [],
    "db": ["upgrade", "status"],
    "report": ["--json"],
    "import": ["RESULT"],
    "export": [],
    "chats": [],
    "demo": [],
    "check": [],
    "insights": ["--json"],
}
REQUIRED = {  # usually given, so that most runs get past argparse
    "db": ["status"],
    "report": ["--chat", "-1004242"],
    "import": ["RESULT"],
    "export": ["--chat", "-1004242"],
    "insights": ["--chat", "-1004242"],
}
INTS = ["-1004242", "-42", "0", "-0", "12345", "1e3", "3660", "99999999999999999999999"]
DAYS = ["2026-11-18", "2999-01-01", "0001-01-01", "9999-12-31", "2026-02-30", "2026-11-18T00"]
ZONES = ["Asia/Shanghai", "UTC", "Mars/Olympus", "../../etc/passwd", "+08:00"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A database with the camp group, its export, and some awkward paths."""
    root = tmp_path_factory.mktemp("fuzz")
    cfg = root / "config.toml"
    cfg.write_text(f'[storage]\nurl = "sqlite:///{root / "opsbot.db"}"\n')
    result = export(root, camp_day())
    assert main(["import", str(result), "--host", "1", "--config", str(cfg)]) == 0
    (root / "plain.txt").write_text("not json, not a folder")
    return {"root": str(root), "config": str(cfg), "result": str(result)}


def paths(root: str, world: dict[str, str]) -> list[str]:
    return [
        world["result"],
        world["config"],
        f"{world['root']}/plain.txt",
        f"{world['root']}/plain.txt/x",
        f"{root}/missing/x",
        f"{root}/out",
        "/proc/x",
        "/proc",
        "",
    ]


def is_help(token: str) -> bool:
    """-h / --help, or an abbreviation argparse would take for it: help is not an error."""
    return token.startswith("-h") or (len(token) >= 3 and "--help".startswith(token))


def argv_for(command: str, root: str, world: dict[str, str]) -> st.SearchStrategy[list[str]]:
    """`command` and a few parts: a flag with a value (plausible, awkward or random), a
    switch or positional, or a stray token (rarer)."""
    text = st.text(
        alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
        max_size=30,
    )
    value = st.one_of(
        st.sampled_from(INTS + DAYS + ZONES + paths(root, world)),
        st.integers().map(str),
        text,
    )
    words = [world["result"] if w == "RESULT" else w for w in WORDS[command]]
    pair = st.tuples(st.sampled_from([*VALUE_FLAGS[command], "--config"]), value).map(list)
    word = st.sampled_from([*words, "--", "-x", "--chat=-1004242"]).map(lambda w: [w])
    stray = value.map(lambda v: [v])
    # mostly flags with values, so that most runs get past argparse to the command
    part = st.integers(0, 9).flatmap(lambda k: pair if k < 6 else word if k < 8 else stray)
    required = [world["result"] if w == "RESULT" else w for w in REQUIRED.get(command, [])]
    return st.tuples(st.booleans(), st.lists(part, max_size=5)).map(
        lambda kp: [
            command,
            *(required if kp[0] else []),
            *(t for p in kp[1] for t in p if not is_help(t)),
        ]
    )


def invoke(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse: usage and one error line
        rc = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return rc, out + err


def check(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    rc, output = invoke(argv, capsys)
    assert "Traceback" not in output, argv
    assert "unexpected" not in output, (argv, output)  # the last resort: a missed case
    assert rc in (0, 1, 2), (argv, rc, output)
    if rc:
        assert len(output.splitlines()) < 10, (argv, output)


FUZZ = settings(
    max_examples=int(os.environ.get("OPSBOT_FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize(
    "command", ["run", "db", "report", "import", "export", "chats", "check", "insights"]
)
def test_cli_never_prints_a_traceback(
    command: str,
    world: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(world["root"])  # export's default --out lands here

    @FUZZ
    @given(argv=argv_for(command, world["root"], world))
    def fuzz(argv: list[str]) -> None:
        # the fuzz world's config first: a generated --config replaces it
        check([argv[0], "--config", world["config"], *argv[1:]], capsys)

    fuzz()


def test_demo_never_prints_a_traceback(
    world: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fewer examples: a demo that succeeds builds a 30-day group (seconds each). In a
    folder of its own: its config.toml must not replace the fuzz world's."""
    monkeypatch.chdir(tmp_path)

    @settings(FUZZ, max_examples=12)
    @given(argv=argv_for("demo", str(tmp_path), world))
    def fuzz(argv: list[str]) -> None:
        check([argv[0], "--config", world["config"], *argv[1:]], capsys)

    fuzz()
