"""manage.py process_webhook_events [--status failed] [--field leadgen] [--id 12 ...]: run stored Meta
webhook events again, inline (e.g. after reconnecting Meta or fixing a handler)."""
from django.core.management.base import BaseCommand

from crm_marketing.webhook_models import WebhookEvent, WebhookHandlerOutcome
from crm_marketing.webhook_processing import process_event

RERUNNABLE = [WebhookEvent.Status.RECEIVED, WebhookEvent.Status.FAILED, WebhookEvent.Status.IGNORED]


class Command(BaseCommand):
    help = "Process stored webhook events again (default: every failed one)."

    def add_arguments(self, parser):
        parser.add_argument("--status", choices=[s.value for s in RERUNNABLE], default=WebhookEvent.Status.FAILED)
        parser.add_argument("--field", help="only events of this field, e.g. leadgen")
        parser.add_argument("--id", type=int, action="append", dest="ids", help="only this event (repeatable)")

    def handle(self, *args, status, field, ids, **options):
        events = WebhookEvent.objects.filter(status=status).order_by("received_at", "id")
        if field:
            events = events.filter(field=field)
        if ids:
            events = events.filter(pk__in=ids)
        event_ids = list(events.values_list("pk", flat=True))
        # Ignored events are not claimable: put them back to received first, and forget what the
        # handlers ignored so they look again (what they processed stays done).
        WebhookEvent.objects.filter(pk__in=event_ids, status=WebhookEvent.Status.IGNORED).update(status=WebhookEvent.Status.RECEIVED)
        WebhookHandlerOutcome.objects.filter(event__in=event_ids, status=WebhookHandlerOutcome.Status.IGNORED).delete()
        outcomes: dict[str, int] = {}
        for event_id in event_ids:
            process_event(event_id)
        for row in WebhookEvent.objects.filter(pk__in=event_ids).values_list("status", flat=True):
            outcomes[row] = outcomes.get(row, 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(outcomes.items())) or "nothing to do"
        self.stdout.write(f"{len(event_ids)} {status} event(s) processed again: {summary}")
