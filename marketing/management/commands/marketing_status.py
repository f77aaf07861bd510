"""manage.py marketing_status --account <slug>: one account's Meta connection, ad account, last syncs,
the task queue and recent failures, in a few lines an operator can read (no token, no full phone)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_timezone

from django.core.management.base import BaseCommand
from django.utils import timezone

from crm_marketing.cli import account_by_slug
from crm_marketing.health import queue_depth
from crm_marketing.logging import mask_phone, redact
from crm_marketing.models import Account
from crm_marketing.webhook_models import WebhookEvent
from marketing.models import AdAccount, SyncRun
from meta_oauth.models import MetaConnection, WhatsAppChannel

RECENT = timedelta(days=7)
SHOWN = 5


def _when(moment: datetime | None) -> str:
    return moment.astimezone(dt_timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if moment else "never"


def _line(text: str, limit: int = 100) -> str:
    text = redact(" ".join(text.split()))  # errors quote Meta's answers: never a token or a phone here
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Command(BaseCommand):
    help = "Print an account's Meta connection, selected ad account, last syncs, queue depth and recent failures."

    def add_arguments(self, parser):
        parser.add_argument("--account", required=True, help="the account's slug")

    def handle(self, *args, account: str, **options) -> None:
        for line in status_lines(account_by_slug(account), now=timezone.now()):
            self.stdout.write(line)


def status_lines(account: Account, *, now: datetime) -> list[str]:
    lines = [f"Account {account.slug} ({account.name}), {account.currency}, {account.timezone}"]
    lines.append(_connection_line(MetaConnection.objects.filter(account=account).first()))
    channel = WhatsAppChannel.objects.filter(account=account, is_selected=True).first()
    if channel is not None:
        lines.append(f"WhatsApp: {channel.verified_name or 'number'} {mask_phone(channel.display_phone_number) if channel.display_phone_number else ''}"
                     f" (quality {channel.quality_rating or 'unknown'}, {channel.messaging_limit_tier or 'tier unknown'})".replace("  ", " "))
    ad_account = AdAccount.objects.filter(account=account, is_selected=True).first()
    if ad_account is None:
        lines.append("Ad account: none selected")
    else:
        parked = f", parked by Meta until {_when(ad_account.parked_until)}" if ad_account.parked_until and ad_account.parked_until > now else ""
        lines.append(f"Ad account: {ad_account.name} ({ad_account.meta_ad_account_id}), {ad_account.currency}, "
                     f"last synced {_when(ad_account.last_synced_at)}{parked}")
    runs = list(SyncRun.objects.filter(account=account).order_by("-created_at", "-id")[:SHOWN])
    lines.append("Last syncs:" if runs else "Last syncs: none")
    for run in runs:
        detail = f"{run.rows} rows, {run.graph_calls} Graph calls" if run.status == SyncRun.Status.SUCCEEDED else _line(run.error or run.status)
        lines.append(f"  {_when(run.created_at)}  {run.kind:<14} {run.status:<9} {detail}")
    try:
        kind, depth = queue_depth()
        lines.append(f"Task queue: {depth} task(s) waiting ({kind} broker, all accounts)")
    except Exception as exc:  # the broker being down is a status to report, not a crash
        lines.append(f"Task queue: unreachable ({type(exc).__name__})")
    lines.extend(_failure_lines(account, since=now - RECENT))
    return lines


def _connection_line(connection: MetaConnection | None) -> str:
    if connection is None:
        return "Meta: not connected"
    who = f" as {connection.meta_user_name or connection.meta_user_id}" if connection.meta_user_name or connection.meta_user_id else ""
    parts = [f"Meta: {connection.status}{who}"]
    if connection.token_expires_at:
        parts.append(f"token expires {_when(connection.token_expires_at)}")
    if connection.scopes:
        parts.append("scopes " + ", ".join(sorted(connection.scopes)))
    if connection.last_error:
        parts.append("last error: " + _line(connection.last_error, 80))
    return "; ".join(parts)


def _failure_lines(account: Account, *, since: datetime) -> list[str]:
    failed_syncs = SyncRun.objects.filter(account=account, status=SyncRun.Status.FAILED, created_at__gte=since).order_by("-created_at", "-id")
    failed_events = WebhookEvent.objects.filter(account=account, status=WebhookEvent.Status.FAILED, received_at__gte=since).order_by("-received_at", "-id")
    sync_count, event_count = failed_syncs.count(), failed_events.count()
    if not sync_count and not event_count:
        return ["Failures (7 days): none"]
    lines = [f"Failures (7 days): {sync_count} failed sync(s), {event_count} failed webhook event(s)"]
    for run in failed_syncs[:SHOWN]:
        lines.append(f"  sync {run.pk} {run.kind} at {_when(run.created_at)}: {_line(run.error or 'no error recorded')}")
    for event in failed_events[:SHOWN]:
        retry = f", retry at {_when(event.next_attempt_at)}" if event.next_attempt_at else ", no retry left"
        lines.append(f"  webhook {event.pk} {event.field} at {_when(event.received_at)}: {_line(event.error or 'no error recorded')}{retry}")
    return lines
