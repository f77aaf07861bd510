"""What sync_meta_campaigns and sync_meta_insights share: picking ad accounts, a progress bar, one summary line."""
from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand, CommandError, OutputWrapper

from crm_marketing.errors import DomainError
from crm_marketing.tenancy import Account
from marketing.services.runs import connected_ad_accounts
from marketing.services.sync import SyncResult, sync_ad_account
from meta_oauth.services import client_for_account


def since_date(value: str | None) -> dt.date | None:
    """Every marketing command's --since, parsed in handle(): a CommandError there is one line on
    stderr and exit code 1, where one raised by an argparse ``type`` is a traceback."""
    if value is None:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--since must be YYYY-MM-DD, not {value!r}.") from None
    if day > dt.date.today() + dt.timedelta(days=1):  # a day ahead: the earliest timezone's today
        raise CommandError(f"--since {value} is in the future.")
    return day


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


class SyncCommand(BaseCommand):
    kind = ""
    noun = ""

    def add_arguments(self, parser) -> None:
        parser.add_argument("--account", help="Account slug (default: every account connected to Meta)")

    def ad_accounts(self, slug: str | None) -> list:
        account = None
        if slug:
            account = Account.objects.filter(slug=slug).first()
            if account is None:
                raise CommandError(f"No account with slug {slug!r}.")
        ad_accounts = list(connected_ad_accounts(account))
        if slug and not ad_accounts:
            raise CommandError(f"{slug} is not connected to Meta or has no ad account selected.")
        return ad_accounts

    def run_syncs(self, slug: str | None, *, since: dt.date | None = None) -> list[SyncResult]:
        results = []
        for ad_account in self.ad_accounts(slug):
            bar = ProgressBar(self.stderr, f"{ad_account.account.slug} {ad_account.meta_ad_account_id}")
            try:
                client = client_for_account(ad_account.account)
                results.append(sync_ad_account(ad_account, client=client, kind=self.kind, since=since, progress=bar))
            except DomainError as error:  # not connected any more, or a sync already running
                results.append(SyncResult(ad_account.meta_ad_account_id, "skipped", error=error.message))
            finally:
                bar.close()
        return results

    def summary(self, results: list[SyncResult], figures: str) -> str:
        counts: dict[str, int] = {}
        for result in results:
            counts[result.status] = counts.get(result.status, 0) + 1
        states = ", ".join(f"{n} {status}" for status, n in counts.items()) or "nothing to do"
        problems = "; ".join(f"{r.ad_account}: {r.error}" for r in results if r.error)
        plural = "" if len(results) == 1 else "s"
        line = f"Synced {self.noun} of {len(results)} ad account{plural}: {states}, {figures}, " \
               f"{sum(r.graph_calls for r in results)} Graph calls."
        return line + (f" {problems}" if problems else "")
