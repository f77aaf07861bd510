"""Sync daily ad insights: the 28-day restatement window plus the history backfill, or from --since."""
from __future__ import annotations

from crm_marketing.cli import since_date
from marketing.management.sync_command import SyncCommand
from marketing.models import SyncRun


class Command(SyncCommand):
    help = ("Sync Meta daily ad insights (--account <slug>; every connected account when omitted). Without "
            "--since: the last 28 days, then the history backfill; with --since YYYY-MM-DD: that day to today.")
    kind = SyncRun.Kind.INSIGHTS
    noun = "insights"

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--since", help="First day to sync (ad account timezone), YYYY-MM-DD")

    def handle(self, *args, **options) -> None:
        results = self.run_syncs(options["account"], since=since_date(options["since"]))
        self.stdout.write(self.summary(results, f"{sum(r.rows for r in results)} insight rows"))
