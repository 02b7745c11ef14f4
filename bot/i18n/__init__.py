"""Message catalogs (zh, en): every user-visible string lives in the catalog files here."""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

LANGUAGES = ("zh", "en")


@cache
def _catalog(lang: str) -> dict[str, str]:
    with (Path(__file__).parent / f"{lang}.toml").open("rb") as fh:
        return tomllib.load(fh)


def t(lang: str, key: str, **values: Any) -> str:
    """The text for `key` in `lang` (falls back to English, then to the key)."""
    text = _catalog(lang if lang in LANGUAGES else "en").get(key) or _catalog("en").get(key, key)
    return text.format(**values) if values else text
