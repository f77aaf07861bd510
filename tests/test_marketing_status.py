"""`manage.py marketing_status --account` tells an operator where an account stands, in a few lines."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_timezone
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from crm_marketing.webhook_models import WebhookEvent
from marketing.models import AdAccount, SyncRun
from meta_oauth.models import MetaConnection, WhatsAppChannel

TOKEN = "EAAsbxUserStatusCommandT0ken9876"
THIS_MINUTE = timezone.now().replace(second=0, microsecond=0)  # the command prints minutes


def at(hours_ago: float) -> datetime:
    return THIS_MINUTE - timedelta(hours=hours_ago)


def when(moment: datetime) -> str:
    return moment.astimezone(dt_timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def marketing_status(slug: str) -> list[str]:
    out = StringIO()
    call_command("marketing_status", "--account", slug, stdout=out)
    return out.getvalue().splitlines()


def test_marketing_status_prints_the_connection_ad_account_syncs_queue_and_recent_failures_without_secrets(acme, globex):
    connection = MetaConnection(account=acme, status=MetaConnection.Status.CONNECTED, meta_user_id="10001", meta_user_name="Alice Meta",
                                token_expires_at=at(-24 * 50), scopes=["ads_read", "leads_retrieval"])
    connection.set_token(TOKEN)
    connection.save()
    WhatsAppChannel.objects.create(account=acme, meta_waba_id="400001", meta_phone_number_id="500001", display_phone_number="+5491155550001",
                                   verified_name="Acme Ventas", quality_rating="GREEN", messaging_limit_tier="TIER_1K")
    ad_account = AdAccount.objects.create(account=acme, meta_ad_account_id="act_300001", name="Acme - Leads AR", currency="ARS",
                                          last_synced_at=at(2))
    runs = [
        (at(2), SyncRun.Kind.FULL, SyncRun.Status.SUCCEEDED, "", 120),
        (at(6), SyncRun.Kind.INSIGHTS, SyncRun.Status.FAILED, f"Graph 500 on POST act_300001/insights?access_token={TOKEN}", 0),
        (at(24 * 30), SyncRun.Kind.ENTITIES, SyncRun.Status.FAILED, "too old to be recent", 0),
    ]
    for created_at, kind, status, error, rows in runs:
        run = SyncRun.objects.create(account=acme, ad_account=ad_account, kind=kind, status=status, error=error, rows=rows, graph_calls=rows // 15)
        SyncRun.objects.filter(pk=run.pk).update(created_at=created_at)
    event = WebhookEvent.objects.create(account=acme, object="page", field="leadgen", dedupe_key="lead-1", payload={},
                                        status=WebhookEvent.Status.FAILED, error="lead 9001 for +5491155550002 not found",
                                        received_at=at(3), next_attempt_at=at(-1))
    WebhookEvent.objects.create(account=globex, object="page", field="leadgen", dedupe_key="lead-2", payload={},
                                status=WebhookEvent.Status.FAILED, error="globex's own failure", received_at=at(3))
    failed_sync = SyncRun.objects.get(kind=SyncRun.Kind.INSIGHTS)

    lines = marketing_status("acme")

    assert lines == [
        "Account acme (Acme), USD, America/Argentina/Buenos_Aires",
        f"Meta: connected as Alice Meta; token expires {when(at(-24 * 50))}; scopes ads_read, leads_retrieval",
        "WhatsApp: Acme Ventas +54911*****001 (quality GREEN, TIER_1K)",
        f"Ad account: Acme - Leads AR (act_300001), ARS, last synced {when(at(2))}",
        "Last syncs:",
        f"  {when(at(2))}  full           succeeded 120 rows, 8 Graph calls",
        f"  {when(at(6))}  insights       failed    Graph 500 on POST act_300001/insights?access_token=[redacted]",
        f"  {when(at(24 * 30))}  entities       failed    too old to be recent",
        "Task queue: 0 task(s) waiting (orm broker, all accounts)",
        "Failures (7 days): 1 failed sync(s), 1 failed webhook event(s)",
        f"  sync {failed_sync.pk} insights at {when(at(6))}: Graph 500 on POST act_300001/insights?access_token=[redacted]",
        f"  webhook {event.pk} leadgen at {when(at(3))}: lead 9001 for +54911*****002 not found, retry at {when(at(-1))}",
    ]
    assert TOKEN[3:] not in "\n".join(lines)


def test_marketing_status_of_an_account_that_never_connected_says_so(globex):
    assert marketing_status("globex") == [
        "Account globex (Globex), EUR, Europe/Madrid",
        "Meta: not connected",
        "Ad account: none selected",
        "Last syncs: none",
        "Task queue: 0 task(s) waiting (orm broker, all accounts)",
        "Failures (7 days): none",
    ]


def test_marketing_status_of_an_unknown_account_is_a_one_line_error(db):
    with pytest.raises(CommandError, match=r"^No account with slug 'nope'\.$"):
        call_command("marketing_status", "--account", "nope")
