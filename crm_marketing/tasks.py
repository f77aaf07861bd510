"""django-q2 entry points of the core: take ids, call a service, return a short result string."""
from __future__ import annotations

from crm_marketing import webhooks


def process_webhook_event(event_id: int) -> str:
    """Run the registered handlers on one stored Meta webhook change."""
    return webhooks.process_event(event_id)


def retry_webhook_events() -> str:
    """Scheduled: queue the failed events whose retry time has come and the ones never processed."""
    event_ids = webhooks.due_event_ids()
    webhooks.release_stuck(event_ids)
    for event_id in event_ids:
        webhooks.queue_event(event_id)
    return f"queued {len(event_ids)} webhook event(s)"
