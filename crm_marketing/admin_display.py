"""How the admin lists show money and times: "1,234,567.00 ARS", and times in the row's account timezone.

Shared by every app's admin (apps -> core), so a column reads the same on every page.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Callable
from zoneinfo import ZoneInfo

from django.contrib import admin
from django.utils import formats, timezone

EMPTY = "-"


def format_money(amount: Decimal | int | float | None, currency: str) -> str:
    """Thousands separators, two decimals and the ISO code: 1234567 ARS -> "1,234,567.00 ARS"."""
    if amount is None:
        return EMPTY
    return f"{Decimal(amount):,.2f} {currency}".strip()


def format_local_time(value: dt.datetime | None, tz_name: str) -> str:
    """``value`` on the account's clock, with the zone's abbreviation: "Nov. 29, 2026, 2:03 p.m. -03"."""
    if value is None:
        return EMPTY
    local = timezone.localtime(value, ZoneInfo(tz_name))
    return f"{formats.date_format(local, 'DATETIME_FORMAT')} {local.tzname()}"


def money_column(field: str, *, description: str, currency: Callable[[object], str] = lambda obj: obj.currency):
    """An admin list column showing ``field`` with separators and the row's currency, sortable by the field."""

    @admin.display(description=description, ordering=field)
    def column(self, obj) -> str:
        return format_money(getattr(obj, field), currency(obj))

    return column


def local_time_column(field: str, *, description: str, account: Callable[[object], object] = lambda obj: obj.account):
    """An admin list column showing ``field`` in the timezone of the row's account (select_related it)."""

    @admin.display(description=description, ordering=field)
    def column(self, obj) -> str:
        owner = account(obj)
        return format_local_time(getattr(obj, field), owner.timezone if owner is not None else "UTC")

    return column
