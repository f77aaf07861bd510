"""manage.py sync_hsm_templates [--account acme]: fetch the WhatsApp templates of the account's WABA
(every account with Meta connected and a WhatsApp channel without --account)."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from automation.services.templates import SyncResult, sync_templates, syncable_accounts
from crm_marketing.errors import DomainError
from crm_marketing.graph import GraphError
from crm_marketing.models import Account
from meta_oauth.services import client_for_account, note_graph_error


class Command(BaseCommand):
    help = "Sync the WhatsApp message templates of the account's WABA; flags rules whose template is not approved."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--account", help="Account slug (default: every account with a WhatsApp channel)")

    def handle(self, *args, account: str | None = None, **options) -> None:
        if account:
            target = Account.objects.filter(slug=account).first()
            if target is None:
                raise CommandError(f"No account with slug {account!r}.")
            targets = [target]
        else:
            targets = list(syncable_accounts())
        results: list[SyncResult] = []
        problems: list[str] = []
        for target in targets:
            try:
                results.append(sync_templates(target, client=client_for_account(target)))
            except DomainError as error:
                problems.append(f"{target.slug}: {error.message}")
            except GraphError as error:
                note_graph_error(target, error)
                problems.append(f"{target.slug}: Meta failed ({error})")
        if account and problems:
            raise CommandError(problems[0])
        line = (f"Synced templates of {len(results)} account(s): {sum(r.templates for r in results)} template(s), "
                f"{sum(r.created for r in results)} new, {sum(r.updated for r in results)} updated, "
                f"{sum(r.marked_deleted for r in results)} marked DELETED, {sum(r.rules_flagged for r in results)} rule(s) flagged, "
                f"{sum(r.rules_cleared for r in results)} flag(s) cleared.")
        self.stdout.write(line + (" Skipped: " + "; ".join(problems) if problems else ""))
