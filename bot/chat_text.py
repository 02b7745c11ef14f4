"""Telegram's length limits on what the bot sends, and user input quoted short in replies."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from telegram.constants import MessageLimit

MAX_TEXT = MessageLimit.MAX_TEXT_LENGTH  # 4096, counted after entities are parsed
MAX_CAPTION = MessageLimit.CAPTION_LENGTH  # 1024
QUOTE_CHARS = 32
ELLIPSIS = "…"


def telegram_len(text: str) -> int:
    """Length as Telegram may count it: UTF-16 code units (an emoji counts 2), never less
    than the number of characters."""
    return len(text.encode("utf-16-le")) // 2


def fit(text: str, limit: int = MAX_TEXT) -> str:
    """The text, cut with "…" so Telegram accepts it; every message and caption goes
    through here (a reply over the limit fails with BadRequest, and the user sees nothing)."""
    if telegram_len(text) <= limit:
        return text
    units = 0
    for i, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > limit - 1:
            return text[:i] + ELLIPSIS
    return text  # not reached: the text is longer than the limit


def quote(given: str, chars: int = QUOTE_CHARS) -> str:
    """User input as a reply shows it: on one line, at most `chars` characters, in quotes."""
    flat = " ".join(given.split())
    return f"“{flat[:chars]}{ELLIPSIS if len(flat) > chars else ''}”"


def fit_lines(
    head: tuple[str, str],
    rows: Sequence[tuple[str, str]],
    more: Callable[[int], str],
    limit: int = MAX_TEXT,
) -> str:
    """An HTML message of a head line and whole rows, as many as fit: each is (HTML, the
    text Telegram shows of it), counted as shown; `more(n)` ends it when n rows are left out
    (its text is short and holds no tags)."""
    room = limit - telegram_len(head[1]) - telegram_len(more(len(rows))) - 2
    out = [head[0]]
    for i, (markup, shown) in enumerate(rows):
        room -= telegram_len(shown) + 1
        if room < 0:
            return "\n".join([*out, more(len(rows) - i)])
        out.append(markup)
    return "\n".join(out)
