"""The base of sync_meta_campaigns and sync_meta_insights: picking ad accounts, running the syncs, one summary line."""
from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand, CommandError

from crm_marketing.cli import ProgressBar, account_by_slug
from crm_marketing.errors import DomainError
from marketing.services.runs import connected_ad_accounts
from marketing.services.sync import SyncResult, sync_ad_account
from meta_oauth.services import client_for_account


class SyncCommand(BaseCommand):
    kind = ""
    noun = ""

    def add_arguments(self, parser) -> None:
        parser.add_argument("--account", help="Account slug (default: every account connected to Meta)")

    def ad_accounts(self, slug: str | None) -> list:
        account = account_by_slug(slug) if slug else None
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
