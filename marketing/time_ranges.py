"""The ``time_range`` rules of the stats endpoints: which days a request reports on.

All windows are inclusive ranges of calendar days in the account's timezone ("today" is the
account's today):

- ``7d``, ``30d``, ``90d``: the N days ending today inclusive (``7d`` = today-6 .. today).
- ``last_7d``, ``last_30d``, ``last_90d``: the N days ending yesterday (today is still moving).
- ``this_month``: the 1st of this month .. today. ``last_month``: the whole previous month.
- ``this_year``: 1 January .. today.
- ``lifetime``: the day of the account's earliest lead, insight or sale .. today (today alone
  when the account has none).
- ``since`` + ``until`` (ISO dates, both required, ``since <= until``, at most MAX_CUSTOM_DAYS
  days, both between FIRST_DAY and LAST_DAY) instead of ``time_range``; the label is then ``custom``.

The previous period, for the ``*_change`` figures, is the window of equal length that ends the
day before ``since``. Anything else is a 400 whose ``fields.time_range`` lists the allowed values.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Callable, Mapping
from zoneinfo import ZoneInfo

from crm_marketing.errors import InvalidInput

RELATIVE_DAYS = {"7d": 7, "30d": 30, "90d": 90}
ENDING_YESTERDAY = {"last_7d": 7, "last_30d": 30, "last_90d": 90}
ALLOWED = ("7d", "30d", "90d", "last_7d", "last_30d", "last_90d", "this_month", "last_month", "this_year", "lifetime")
DEFAULT = "30d"
CUSTOM = "custom"
MAX_CUSTOM_DAYS = 3660  # ten years: enough for any history, small enough to zero-fill a chart
# Far from date.min/date.max, so a window, its previous period and its bounds never overflow.
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(2999, 12, 31)


@dataclass(frozen=True)
class Window:
    """An inclusive range of days and the label it was asked for with.

    The one day-range type: the stats endpoints resolve it from a request, the insights sync
    halves and slices it into report runs (a sync's windows carry the ``custom`` label).
    """

    since: date
    until: date
    label: str = CUSTOM

    @property
    def days(self) -> int:
        return (self.until - self.since).days + 1

    def previous(self) -> "Window":
        until = self.since - timedelta(days=1)
        return Window(since=until - timedelta(days=self.days - 1), until=until, label=self.label)

    def bounds(self, tz: ZoneInfo) -> tuple[datetime, datetime]:
        """[start, end) as aware datetimes: midnight of ``since`` .. midnight after ``until`` in ``tz``."""
        start = datetime.combine(self.since, time.min, tzinfo=tz)
        end = datetime.combine(self.until + timedelta(days=1), time.min, tzinfo=tz)
        return start, end

    def halves(self) -> tuple["Window", "Window"]:
        """(older, newer) halves."""
        middle = self.since + timedelta(days=self.days // 2 - 1)
        return Window(self.since, middle, self.label), Window(middle + timedelta(days=1), self.until, self.label)

    def slices(self, days: int) -> list["Window"]:
        """Consecutive windows of at most ``days``, newest first."""
        out, until = [], self.until
        while until >= self.since:
            since = max(self.since, until - timedelta(days=days - 1))
            out.append(Window(since, until, self.label))
            until = since - timedelta(days=1)
        return out

    def as_dict(self) -> dict:
        """``{"since": "YYYY-MM-DD", "until": ...}``: a payload's period and Graph's ``time_range``."""
        return {"since": self.since.isoformat(), "until": self.until.isoformat()}

    def __str__(self) -> str:
        return f"{self.since}..{self.until}"


def _allowed_message() -> str:
    return f"Allowed: {', '.join(ALLOWED)}, or since and until (YYYY-MM-DD)."


def _parse_day(params: Mapping, name: str) -> date:
    raw = params.get(name)
    try:
        day = date.fromisoformat(raw)
    except (TypeError, ValueError):
        raise InvalidInput({name: ["Enter a date as YYYY-MM-DD."]}) from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise InvalidInput({name: [f"Enter a date between {FIRST_DAY} and {LAST_DAY}."]})
    return day


def resolve_window(params: Mapping, *, today: date, earliest: Callable[[], date | None], default: str = DEFAULT) -> Window:
    """The window a request's query parameters ask for.

    ``earliest`` is only called for ``lifetime`` (it queries the account's first activity day).
    """
    label = params.get("time_range")
    if "since" in params or "until" in params:
        if label not in (None, "", CUSTOM):
            raise InvalidInput({"time_range": ["Give either time_range or since and until, not both."]})
        since, until = _parse_day(params, "since"), _parse_day(params, "until")
        if since > until:
            raise InvalidInput({"since": ["since must be on or before until."]})
        if (until - since).days + 1 > MAX_CUSTOM_DAYS:
            raise InvalidInput({"until": [f"The range may span at most {MAX_CUSTOM_DAYS} days."]})
        return Window(since, until, CUSTOM)
    label = label or default
    if label in RELATIVE_DAYS:
        return Window(today - timedelta(days=RELATIVE_DAYS[label] - 1), today, label)
    if label in ENDING_YESTERDAY:
        yesterday = today - timedelta(days=1)
        return Window(yesterday - timedelta(days=ENDING_YESTERDAY[label] - 1), yesterday, label)
    if label == "this_month":
        return Window(today.replace(day=1), today, label)
    if label == "last_month":
        last_day = today.replace(day=1) - timedelta(days=1)
        return Window(last_day.replace(day=1), last_day, label)
    if label == "this_year":
        return Window(today.replace(month=1, day=1), today, label)
    if label == "lifetime":
        first = earliest()
        return Window(max(FIRST_DAY, min(first, today)) if first else today, today, label)
    raise InvalidInput({"time_range": [_allowed_message()]})
