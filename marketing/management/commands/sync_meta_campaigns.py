"""Sync campaigns, ad sets and ads (all statuses) of the selected ad account of each connected account."""
from __future__ import annotations

from marketing.management.sync_command import SyncCommand
from marketing.models import SyncRun


class Command(SyncCommand):
    help = "Sync Meta campaigns, ad sets and ads (--account <slug>; every connected account when omitted)."
    kind = SyncRun.Kind.ENTITIES
    noun = "campaigns"

    def handle(self, *args, **options) -> None:
        results = self.run_syncs(options["account"])
        self.stdout.write(self.summary(results, f"{sum(r.entities for r in results)} campaigns/ad sets/ads"))
