"""manage.py backfill_meta_leads --account acme [--since 2026-11-01] [--form 900001]: fetch the Lead Ads
leads of every form we have seen and record the ones whose webhook Meta never delivered."""
import datetime as dt
from zoneinfo import ZoneInfo

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from crm_marketing.audit import record_event
from crm_marketing.errors import NotConnected
from crm_marketing.graph import GraphError
from crm_marketing.models import Account
from marketing.services.attribution import backfill_form_leads
from meta_oauth.services import client_for_account, note_graph_error

DEFAULT_DAYS = 7  # Meta keeps leads for 90 days and retries a leadgen webhook for up to 36 h


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--since wants a date like 2026-11-01, not {value!r}.") from None


class Command(BaseCommand):
    help = "Record the Lead Ads leads created since a date for the forms this account has seen."

    def add_arguments(self, parser):
        parser.add_argument("--account", required=True, help="account slug")
        parser.add_argument("--since", type=_date, help=f"first day (account timezone); default {DEFAULT_DAYS} days ago")
        parser.add_argument("--form", action="append", dest="forms", help="a form id (repeatable); default every form seen")

    def handle(self, *args, account, since, forms, **options):
        target = Account.objects.filter(slug=account).first()
        if target is None:
            raise CommandError(f"No account with slug {account!r}.")
        tz = ZoneInfo(target.timezone)
        day = since or (timezone.now().astimezone(tz).date() - dt.timedelta(days=DEFAULT_DAYS))
        start = dt.datetime.combine(day, dt.time.min, tz)
        try:
            client = client_for_account(target)
        except NotConnected as exc:
            raise CommandError(exc.message) from None
        try:
            result = backfill_form_leads(target, client=client, since=start, form_ids=forms)
        except GraphError as error:
            note_graph_error(target, error)
            raise CommandError(f"Meta failed: {error}") from None
        record_event("leads.backfill", account=target, since=day.isoformat(), forms=result.forms, fetched=result.fetched,
                     leads_created=result.leads_created)
        self.stdout.write(f"{target.slug}: {result.forms} form(s), {result.fetched} lead(s) fetched since {day}, "
                          f"{result.leads_created} new lead(s), {result.touches_created} new touch(es)")
