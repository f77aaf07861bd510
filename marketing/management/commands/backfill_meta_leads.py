"""manage.py backfill_meta_leads --account acme [--since 2026-11-01] [--form 900001]: fetch the Lead Ads
leads of every form we have seen and record the ones whose webhook Meta never delivered."""

from django.core.management.base import BaseCommand, CommandError

from crm_marketing.errors import NotConnected
from crm_marketing.graph import GraphError
from crm_marketing.cli import account_by_slug, since_date
from marketing.services.leads_backfill import DEFAULT_DAYS, backfill_account_leads



class Command(BaseCommand):
    help = "Record the Lead Ads leads created since a date for the forms this account has seen."

    def add_arguments(self, parser):
        parser.add_argument("--account", required=True, help="account slug")
        parser.add_argument("--since", help=f"first day (account timezone); default {DEFAULT_DAYS} days ago")
        parser.add_argument("--form", action="append", dest="forms", help="a form id (repeatable); default every form seen")

    def handle(self, *args, account, since, forms, **options):
        since = since_date(since)
        target = account_by_slug(account)
        try:
            day, result = backfill_account_leads(target, since=since, form_ids=forms)
        except NotConnected as exc:
            raise CommandError(exc.message) from None
        except GraphError as error:
            raise CommandError(f"Meta failed: {error}") from None
        self.stdout.write(f"{target.slug}: {result.forms} form(s), {result.fetched} lead(s) fetched since {day}, "
                          f"{result.leads_created} new lead(s), {result.touches_created} new touch(es)")
