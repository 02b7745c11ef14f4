"""opsbot: retention and active-member rates for Telegram operations groups."""

import os

# Opt in to python-telegram-bot's coming timedelta durations (retry_after etc.) now.
os.environ.setdefault("PTB_TIMEDELTA", "1")
