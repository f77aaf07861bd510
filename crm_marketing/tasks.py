"""django-q2 entry points of the core: take ids, call a service, return a short result string."""
from __future__ import annotations

from crm_marketing import event_drain, events, webhook_processing, webhooks

SWEEP_BATCH = 200


def deliver_event(event_id: int) -> str:
    """Deliver one published domain event to the subscribers that have not got it yet."""
    return events.deliver_event(event_id)


def drain_domain_events() -> str:
    """Deliver every new domain event in batches (``events.publish`` queues one while none is waiting)."""
    return event_drain.drain()


def deliver_due_events() -> str:
    """Scheduled every minute: events no task delivered and failed deliveries whose retry time has come."""
    return events.deliver_due(SWEEP_BATCH)


def process_webhook_event(event_id: int) -> str:
    """Run the registered handlers on one stored Meta webhook change."""
    return webhook_processing.process_event(event_id)


def process_webhook_events(event_ids: list[int]) -> str:
    """Run the handlers on these stored changes (the retry sweep's batch)."""
    return webhook_processing.process_events(event_ids)


def drain_webhook_events() -> str:
    """Run the handlers on every received change, in batches (the intake queues one while none is waiting)."""
    return webhook_processing.drain_events()


def retry_webhook_events() -> str:
    """Scheduled: queue the failed events whose retry time has come and the ones never processed."""
    event_ids = webhook_processing.due_event_ids()
    webhook_processing.release_stuck(event_ids)
    if event_ids:
        webhooks.queue_events(event_ids)
    return f"queued {len(event_ids)} webhook event(s)"
