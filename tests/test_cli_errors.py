"""What a user sees when the database, --out or an argument is wrong: one line, the
right exit code, never a traceback (issue 17), through the real CLI."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cli import main
from tests.conftest import PG_URL, drop_pg_database, fresh_pg_database
from tests.test_import import camp_day, export

CAMP = "-1004242"  # the group of camp_day(), tracked from 2026-11-18
NO_PG = pytest.mark.skipif(
    not PG_URL,
    reason="PostgreSQL: set OPSBOT_TEST_DATABASE_URL (e.g. postgresql://postgres@127.0.0.1/test)",
)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `opsbot argv`; a traceback anywhere fails the test."""
    try:
        rc = main(list(argv))
    except SystemExit as exc:  # argparse
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def config(tmp_path: Path, url: str, name: str = "config.toml") -> str:
    cfg = tmp_path / name
    cfg.write_text(f'[storage]\nurl = "{url}"\n')
    return str(cfg)


@pytest.fixture
def camp(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """A config whose SQLite database holds the camp group."""
    cfg = config(tmp_path, f"sqlite:///{tmp_path / 'opsbot.db'}")
    assert (
        run(capsys, "import", str(export(tmp_path, camp_day())), "--host", "1", "--config", cfg)[0]
        == 0
    )
    return cfg


@pytest.fixture
def pg_url() -> Iterator[str]:
    if not PG_URL:
        pytest.skip("PostgreSQL: set OPSBOT_TEST_DATABASE_URL")
    url, name = asyncio.run(fresh_pg_database())
    try:
        yield url
    finally:
        asyncio.run(drop_pg_database(name))


def daily_csv(out: Path) -> list[dict[str, str]]:
    text = (out / f"opsbot_{CAMP}_daily.csv").read_text(encoding="utf-8-sig")
    return list(csv.DictReader(text.splitlines()))


# ---- export over long ranges ------------------------------------------------------------


def check_long_exports(tmp_path: Path, capsys: pytest.CaptureFixture[str], cfg: str) -> None:
    """--days 1000 and the CLI's maximum give the same rows as a short range: one per day
    since tracking began, today's marked partial."""
    rows = {}
    for days in ("20", "1000", "3660"):
        out = tmp_path / f"csv{days}"
        rc, stdout, _ = run(
            capsys, "export", "--chat", CAMP, "--days", days, "--out", str(out), "--config", cfg
        )
        assert rc == 0
        assert [Path(f).name.rsplit("_", 1)[1] for f in stdout.splitlines()] == [
            "daily.csv",
            "members.csv",
            "sources.csv",
        ]
        rows[days] = daily_csv(out)
    assert rows["1000"] == rows["3660"]
    long = rows["1000"]
    assert long[0]["date"] == "2026-11-18"  # nothing before tracking began
    assert [r["partial"] for r in long] == ["no"] * (len(long) - 1) + ["yes"]
    # the first day's numbers are the digest's (tests/test_cli_offline.py checks them by hand)
    rc, stdout, _ = run(
        capsys, "report", "--chat", CAMP, "--date", "2026-11-18", "--json", "--config", cfg
    )
    assert rc == 0
    report = json.loads(stdout)
    active, day0 = report["active"], report["retention"]["day0"]
    first = long[0]
    assert first["joins"] == str(report["joins"])
    assert first["audience"] == str(active["audience"])
    assert first["response_rate"] == str(round(active["response"]["rate"], 4))
    assert first["interaction_users"] == str(active["interaction"]["users"])
    assert first["retention_day0"] == str(round(day0["rate"], 4))
    assert report["joins"] > 0
    assert rows["20"] == long[-20:]


def test_export_1000_days_on_sqlite(
    tmp_path: Path, camp: str, capsys: pytest.CaptureFixture[str]
) -> None:
    check_long_exports(tmp_path, capsys, camp)


@NO_PG
def test_export_900_days_on_postgres(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path, pg_url)
    assert (
        run(capsys, "import", str(export(tmp_path, camp_day())), "--host", "1", "--config", cfg)[0]
        == 0
    )
    out = tmp_path / "csv900"
    rc, _, _ = run(
        capsys, "export", "--chat", CAMP, "--days", "900", "--out", str(out), "--config", cfg
    )
    assert rc == 0
    assert daily_csv(out)[0]["date"] == "2026-11-18"
    check_long_exports(tmp_path, capsys, cfg)


@pytest.mark.parametrize("days", ["0", "-5", "3661", "99999999999999999999"])
def test_export_days_out_of_range(
    days: str, camp: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = run(capsys, "export", "--chat", CAMP, "--days", days, "--config", camp)
    assert rc == 2
    assert one_line(err) == f"opsbot: --days: expected 1 to 3660, got {int(days)}"


# ---- database locations -------------------------------------------------------------------

COMMANDS = {
    "chats": ["chats"],
    "report": ["report", "--chat", CAMP],
    "import": ["import", "RESULT"],
    "db status": ["db", "status"],
}


def command(name: str, tmp_path: Path) -> list[str]:
    result = str(export(tmp_path, camp_day()))
    return [result if a == "RESULT" else a for a in COMMANDS[name]]


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize("where", ["missing folder", "under /proc", "under a file"])
def test_sqlite_file_in_a_folder_that_does_not_exist(
    name: str, where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "plain").write_text("x")
    folder = {
        "missing folder": tmp_path / "nope",
        "under /proc": Path("/proc/opsbot-none"),
        "under a file": tmp_path / "plain",
    }[where]
    cfg = config(tmp_path, f"sqlite:///{folder / 'opsbot.db'}")
    rc, _, err = run(capsys, *command(name, tmp_path), "--config", cfg)
    assert rc == 2
    assert one_line(err) == (
        f"opsbot: [storage] url: the folder {folder} does not exist: create it, "
        "or check the folder in [storage] url"
    )
    assert not folder.is_dir()


def test_sqlite_file_that_cannot_be_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """/proc exists, but no file can be made there: the commands that create a database
    say so; the read-only ones say there is none."""
    cfg = config(tmp_path, "sqlite:////proc/opsbot.db")
    rc, _, err = run(capsys, *command("import", tmp_path), "--config", cfg)
    assert rc == 2
    assert one_line(err) == (
        "opsbot: [storage] url: cannot open the SQLite file /proc/opsbot.db: check that "
        "the folder /proc exists and that opsbot may write there"
    )
    rc, _, err = run(capsys, "db", "upgrade", "--config", cfg)
    assert (rc, one_line(err)) == (
        2,
        (
            "opsbot: [storage] url: cannot open the SQLite file /proc/opsbot.db: check that "
            "the folder /proc exists and that opsbot may write there"
        ),
    )


@pytest.mark.parametrize("name", COMMANDS)
def test_file_that_is_not_a_database(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list: milk, eggs, a new database\n" * 20)
    cfg = config(tmp_path, f"sqlite:///{notes}")
    rc, _, err = run(capsys, *command(name, tmp_path), "--config", cfg)
    assert rc == 2
    assert one_line(err) == (
        f"opsbot: [storage] url: {notes} is not a SQLite database: point [storage] url at "
        "opsbot's database file, or move that file away"
    )
    assert notes.read_text().startswith("shopping list")


@pytest.mark.parametrize("name", COMMANDS)
def test_postgresql_down(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listens on port 1: connection refused (no server needed for this one)."""
    cfg = config(tmp_path, "postgresql://opsbot:s3cret@127.0.0.1:1/opsbot")
    rc, _, err = run(capsys, *command(name, tmp_path), "--config", cfg)
    assert rc == 2
    assert one_line(err) == (
        "opsbot: [storage] url: cannot connect to PostgreSQL at 127.0.0.1:1 (connection "
        "refused): start the server, or fix the host and port in [storage] url"
    )
    assert "s3cret" not in err


@NO_PG
@pytest.mark.parametrize("name", COMMANDS)
def test_postgresql_database_that_does_not_exist(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sqlalchemy.engine import make_url

    assert PG_URL is not None
    url = make_url(PG_URL).set(database="opsbot_never_created")
    cfg = config(tmp_path, url.render_as_string(hide_password=False))
    rc, _, err = run(capsys, *command(name, tmp_path), "--config", cfg)
    assert rc == 2
    server = f"{url.host}:{url.port or 5432}"
    assert one_line(err) == (
        "opsbot: [storage] url: database 'opsbot_never_created' does not exist on the "
        f"PostgreSQL server at {server}: create it (createdb opsbot_never_created; see the "
        "README), or fix [storage] url"
    )


@pytest.mark.parametrize("name", ["chats", "import", "db status"])
def test_postgresql_url_without_asyncpg(name: str, tmp_path: Path) -> None:
    """A real process in which `import asyncpg` fails, as on an install without
    opsbot[postgres]."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import sys\n"
        "class NoAsyncpg:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'asyncpg' or name.startswith('asyncpg.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NoAsyncpg())\n"
    )
    cfg = config(tmp_path, "postgresql://opsbot@127.0.0.1:1/opsbot")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), os.getcwd()])}
    env.pop("OPSBOT_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", *command(name, tmp_path), "--config", cfg],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.returncode == 2
    assert one_line(proc.stderr) == (
        "opsbot: [storage] url names a PostgreSQL database, but its driver (asyncpg) is not "
        "installed: pip install 'opsbot[postgres]'"
    )


# ---- read-only commands never create a database ---------------------------------------------

READ_ONLY = {
    "chats": ["chats"],
    "report": ["report", "--chat", CAMP],
    "export": ["export", "--chat", CAMP],
    "db status": ["db", "status"],
}


@pytest.mark.parametrize("name", READ_ONLY)
def test_read_only_commands_do_not_create_a_sqlite_database(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "opsbot.db"
    cfg = config(tmp_path, f"sqlite:///{path}")
    rc, _, err = run(capsys, *READ_ONLY[name], "--config", cfg)
    assert rc == 1
    assert one_line(err) == (
        f"opsbot: [storage] url: there is no database at {path}: check [storage] url, or "
        "create one with opsbot import FILE, opsbot run or opsbot db upgrade"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


@NO_PG
@pytest.mark.parametrize("name", READ_ONLY)
def test_read_only_commands_do_not_create_postgresql_tables(
    name: str,
    tmp_path: Path,
    pg_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sqlalchemy.engine import make_url

    monkeypatch.chdir(tmp_path)
    cfg = config(tmp_path, pg_url)
    rc, _, err = run(capsys, *READ_ONLY[name], "--config", cfg)
    assert rc == 1
    url = make_url(pg_url)
    assert one_line(err) == (
        f"opsbot: [storage] url: there is no opsbot database at {url.database!r} at "
        f"{url.host}:{url.port or 5432} (no tables): check [storage] url, or create them "
        "with opsbot db upgrade"
    )
    assert asyncio.run(table_names(pg_url)) == []


async def table_names(url: str) -> list[str]:
    from sqlalchemy import inspect

    from storage import db

    engine = db.make_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda c: inspect(c).get_table_names())
    finally:
        await engine.dispose()


def test_db_upgrade_creates_and_status_then_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path, f"sqlite:///{tmp_path / 'opsbot.db'}")
    rc, out, _ = run(capsys, "db", "upgrade", "--config", cfg)
    assert rc == 0
    revision = one_line(out)
    assert revision.startswith("schema revision: ")
    assert "none" not in revision
    assert run(capsys, "db", "status", "--config", cfg)[:2] == (0, out)
    assert run(capsys, "chats", "--config", cfg)[:2] == (
        0,
        "no groups yet (run the bot, or opsbot import FILE)\n",
    )


# ---- --out -------------------------------------------------------------------------------


def bad_outs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    return {
        "missing parent": (
            tmp_path / "nope" / "out",
            f"{tmp_path / 'nope'} is not an existing folder: create it first",
        ),
        "under a file": (plain / "out", f"{plain} is not an existing folder: create it first"),
        "existing file": (plain, "is a file, not a folder: give a folder"),
        "unwritable": (Path("/proc/opsbot-out"), "cannot write /proc/opsbot-out: "),
        "unwritable folder": (Path("/proc"), "cannot write /proc/"),
    }


@pytest.mark.parametrize(
    "case", ["missing parent", "under a file", "existing file", "unwritable", "unwritable folder"]
)
def test_export_out_that_cannot_be_written(
    case: str, tmp_path: Path, camp: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out, message = bad_outs(tmp_path)[case]
    rc, stdout, err = run(capsys, "export", "--chat", CAMP, "--out", str(out), "--config", camp)
    assert rc == 2
    line = one_line(err)
    assert line.startswith(f"opsbot: --out {out}: ")
    assert message in line
    assert stdout == ""


@pytest.mark.parametrize(
    "case", ["missing parent", "under a file", "existing file", "unwritable", "unwritable folder"]
)
def test_demo_out_that_cannot_be_written(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, message = bad_outs(tmp_path)[case]
    cfg = tmp_path / "empty.toml"
    cfg.write_text("")
    rc, _, err = run(capsys, "demo", "--out", str(out), "--config", str(cfg))
    assert rc == 2
    line = one_line(err)
    assert line.startswith(f"opsbot: --out {out}: ")
    assert message in line


# ---- arguments ----------------------------------------------------------------------------


def test_report_for_a_day_not_begun(camp: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "report", "--chat", CAMP, "--date", "2999-01-01", "--config", camp)
    assert (rc, out) == (2, "")
    line = one_line(err)
    assert line.startswith(
        "opsbot: --date 2999-01-01: that day has not begun yet in Asia/Shanghai (today is "
    )
    assert line.endswith("): give today or an earlier day")
    rc, out, err = run(capsys, "report", "--chat", CAMP, "--date", "0001-01-01", "--config", camp)
    assert (rc, one_line(err)) == (
        2,
        "opsbot: --date 0001-01-01: expected a day from 2013-08-14 on",
    )
    rc, out, _ = run(capsys, "report", "--chat", CAMP, "--date", "2026-11-18", "--config", camp)
    assert rc == 0
    assert "Camp" in out


def test_import_refuses_a_positive_chat_id(
    tmp_path: Path, camp: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "opsbot.db"
    before = db.read_bytes()
    result = str(export(tmp_path, camp_day(), name="again.json"))
    rc, out, err = run(capsys, "import", result, "--chat-id", "12345", "--config", camp)
    assert (rc, out) == (2, "")
    assert one_line(err) == (
        "opsbot: --chat-id 12345: not a group: group ids are negative (-100… for "
        "supergroups); opsbot chats lists the groups in the database"
    )
    assert db.read_bytes() == before
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM chats").fetchone() == (1,)


def test_import_of_a_missing_file_creates_no_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path, f"sqlite:///{tmp_path / 'opsbot.db'}")
    rc, _, err = run(capsys, "import", str(tmp_path / "result.json"), "--config", cfg)
    assert rc == 2
    assert one_line(err) == (
        f"opsbot: import failed, nothing was changed: {tmp_path / 'result.json'}: no such file"
    )
    assert not (tmp_path / "opsbot.db").exists()


def test_an_unexpected_error_is_one_line_without_its_message(
    camp: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last resort: a bug shows its class, not a traceback and not its text (which
    could hold a URL with a password, or a message)."""
    from storage.repo import Repo

    async def broken(self: Repo) -> None:
        raise RuntimeError("postgresql://u:hunter2@db/opsbot")

    monkeypatch.setattr(Repo, "chat_periods", broken)
    monkeypatch.delenv("OPSBOT_DEBUG", raising=False)
    rc, _, err = run(capsys, "chats", "--config", camp)
    assert rc == 1
    assert one_line(err) == (
        "opsbot: chats failed: unexpected RuntimeError (set OPSBOT_DEBUG=1 to see where; "
        "please report it)"
    )


def test_a_database_failure_after_opening_is_one_line(
    tmp_path: Path, camp: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database opened, then failed (locked for longer than the busy timeout)."""
    from sqlalchemy.exc import OperationalError

    from storage.repo import Repo

    async def locked(self: Repo) -> None:
        raise OperationalError("SELECT", {}, sqlite3.OperationalError("database is locked"))

    monkeypatch.setattr(Repo, "chat_periods", locked)
    monkeypatch.delenv("OPSBOT_DEBUG", raising=False)
    rc, _, err = run(capsys, "chats", "--config", camp)
    assert rc == 2
    assert one_line(err) == (
        f"opsbot: [storage] url: cannot use the SQLite file {tmp_path / 'opsbot.db'}: "
        "database is locked"
    )
