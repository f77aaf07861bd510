"""What every app's management commands share: reading --since and --account, and a progress bar.

Errors are ``CommandError`` raised in ``handle()``: one line on stderr and exit code 1, where one
raised by an argparse ``type`` would be a traceback.
"""
from __future__ import annotations

import datetime as dt

from django.core.management.base import CommandError, OutputWrapper

from crm_marketing.tenancy import Account


def since_date(value: str | None) -> dt.date | None:
    """A command's --since (YYYY-MM-DD, not in the future), or None when not given."""
    if value is None:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--since must be YYYY-MM-DD, not {value!r}.") from None
    if day > dt.date.today() + dt.timedelta(days=1):  # a day ahead: the earliest timezone's today
        raise CommandError(f"--since {value} is in the future.")
    return day


def account_by_slug(slug: str) -> Account:
    """The account a command's --account names."""
    account = Account.objects.filter(slug=slug).first()
    if account is None:
        raise CommandError(f"No account with slug {slug!r}.")
    return account


def _plain(text: str) -> str:
    return text


class ProgressBar:
    """A one-line bar on stderr, drawn only on a terminal (stdout keeps the one summary line)."""

    WIDTH = 30

    def __init__(self, stream: OutputWrapper, prefix: str) -> None:
        self.stream, self.prefix = stream, prefix
        self.enabled = stream.isatty()

    def __call__(self, label: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        filled = int(self.WIDTH * done / max(total, 1))
        self.stream.write(f"\r{self.prefix} {label:<9} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{total}",
                          style_func=_plain, ending="")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("", style_func=_plain)
