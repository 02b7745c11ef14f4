"""Keep the bot token out of every log record, whoever logs it (PTB logs its URLs at DEBUG)."""

from __future__ import annotations

import logging
from typing import Any

_secrets: set[str] = set()
_installed = False


def redact_in_logs(secret: str) -> None:
    """From now on, `secret` appears as `<token>` in every log record of this process."""
    global _installed
    _secrets.add(secret)
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        message = record.getMessage()
        if any(s in message for s in _secrets):
            for s in _secrets:
                message = message.replace(s, "<token>")
            record.msg, record.args = message, ()
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
