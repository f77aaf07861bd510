"""manage.py run_automation --account <slug>: one send pass by hand (plans no_reply follow-ups first)."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from automation.engine.passes import PassResult, run_pass
from automation.engine.planning import plan_no_reply
from crm_marketing.models import Account


class Command(BaseCommand):
    help = "Plan no_reply follow-ups and send the account's due WhatsApp messages now."

    def add_arguments(self, parser):
        parser.add_argument("--account", required=True, help="account slug")
        parser.add_argument("--seconds", type=float, default=50.0, help="stop after this long (default 50)")

    def handle(self, *args, account: str, seconds: float, **options):
        target = Account.objects.filter(slug=account).first()
        if target is None:
            raise CommandError(f"No account with slug {account!r}.")
        planned = plan_no_reply(target)

        def progress(result: PassResult) -> None:
            self.stdout.write(f"\r{result.claimed} send(s) handled...", ending="")
            self.stdout.flush()

        result = run_pass(account_id=target.pk, budget_seconds=seconds, progress=progress)
        if result.claimed:
            self.stdout.write("")
        self.stdout.write(f"{target.slug}: {planned} no_reply send(s) planned; {result.summary()}")
