"""User-facing text never mentions the team's internal specification (a user has no such file):
chat texts, every subcommand's --help, the README, docs/ and the example config."""

from __future__ import annotations

import argparse
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cli import build_parser
from bot.i18n import LANGUAGES

ROOT = Path(__file__).resolve().parents[1]
SPEC_WORD = re.compile(r"\bSPEC\b")


def mentions(texts: dict[str, str]) -> list[str]:
    """`where: line` for every line of every text that names the specification."""
    return [
        f"{where}: {line.strip()}"
        for where, text in texts.items()
        for line in text.splitlines()
        if SPEC_WORD.search(line)
    ]


def _helps(parser: argparse.ArgumentParser, name: str) -> Iterator[tuple[str, str]]:
    yield f"{name} --help", parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _helps(sub, f"{name} {sub_name}")


def help_texts() -> dict[str, str]:
    return dict(_helps(build_parser(), "opsbot"))


def catalog_texts() -> dict[str, str]:
    texts = {}
    for lang in LANGUAGES:
        path = ROOT / "bot" / "i18n" / f"{lang}.toml"
        with path.open("rb") as fh:
            for key, value in tomllib.load(fh).items():
                texts[f"i18n/{lang}.toml {key}"] = str(value)
    return texts


def file_texts() -> dict[str, str]:
    paths = [ROOT / "README.md", ROOT / "config.example.toml", *sorted(ROOT.glob("docs/*.md"))]
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in paths}


def test_every_subcommand_help_is_rendered() -> None:
    helps = help_texts()
    for command in ("run", "db", "report", "import", "export", "chats", "demo"):
        assert f"opsbot {command} --help" in helps
    assert "docs/metrics.md" in helps["opsbot --help"]
    assert "docs/metrics.md" in helps["opsbot report --help"]


def test_docs_exist_and_are_read() -> None:
    assert "docs/metrics.md" in file_texts()


@pytest.mark.parametrize(
    "texts",
    [help_texts, catalog_texts, file_texts],
    ids=["argparse help", "i18n catalogs", "README, docs, example config"],
)
def test_no_user_facing_text_mentions_spec(texts: object) -> None:
    assert callable(texts)
    found = texts()
    assert found, "nothing was read"
    assert mentions(found) == []


def test_the_check_catches_a_mention() -> None:
    """The check above can fail: the forms that were once in the project are caught."""
    assert mentions({"help": "the digest (--json: SPEC 8)"}) == [
        "help: the digest (--json: SPEC 8)"
    ]
    assert mentions({"README": "see the product specification (`SPEC.md`)"})
    assert mentions({"i18n": "as SPEC 3 says"})
    assert not mentions({"ok": "specification, SPECIAL, spec"})


def test_catalogs_point_to_the_metrics_doc() -> None:
    for lang in LANGUAGES:
        assert "docs/metrics.md" in catalog_texts()[f"i18n/{lang}.toml start"]
