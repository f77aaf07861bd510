"""The one reader of the times Meta sends, for every app (Graph fields, webhooks, debug_token)."""
from __future__ import annotations

import datetime as dt
from typing import Any

# Graph fields: "2026-11-24T14:03:11+0000" (strptime's %z also takes "+00:00" and "Z"), sometimes with fractions.
GRAPH_FORMATS = ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z")


def parse_meta_time(value: Any) -> dt.datetime | None:
    """A time as Meta sends it -> an aware datetime; None when missing, zero or unreadable.

    Graph fields are ISO 8601 with an offset; webhooks (leadgen ``created_time``, WhatsApp
    ``timestamp``) and debug_token (``expires_at``) send unix seconds, as a number or a digit
    string, where 0 means "never" (a token that does not expire). A time without an offset is
    refused rather than guessed.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().isdigit()):
        try:
            seconds = int(value)
            return dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc) if seconds > 0 else None
        except (ValueError, OverflowError, OSError):
            return None
    if not isinstance(value, str):
        return None
    for fmt in GRAPH_FORMATS:
        try:
            return dt.datetime.strptime(value.strip(), fmt)
        except ValueError:
            continue
    return None
