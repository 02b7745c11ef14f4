"""The dashboard: a Telegram Mini App and a web page over the same numbers as the commands."""
