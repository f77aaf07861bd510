"""Domain events: the core publishes, apps subscribe from their AppConfig.ready().

The core never imports an app. Handlers run after the surrounding transaction commits, so a
rolled-back change never triggers an automation, and a failing handler never undoes the change.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

from django.db import transaction

log = logging.getLogger(__name__)

LEAD_CREATED = "lead_created"
LEAD_STATUS_CHANGED = "lead_status_changed"
OPPORTUNITY_CREATED = "opportunity_created"
OPPORTUNITY_STAGE_CHANGED = "opportunity_stage_changed"
OPPORTUNITY_WON = "opportunity_won"
LEAD_REPLIED = "lead_replied"
# Rows were written in bulk (bulk_create, COPY: no model signals): apps re-derive what they keep
# from the account's CRM rows. Payload: none beyond account_id.
CRM_BULK_LOADED = "crm_bulk_loaded"


@dataclass(frozen=True)
class DomainEvent:
    name: str
    account_id: int
    payload: dict[str, Any] = field(default_factory=dict)
    id: int | None = None  # the outbox row's id once events are durable: subscribers key idempotency on it


Handler = Callable[[DomainEvent], None]
_subscribers: dict[str, list[Handler]] = defaultdict(list)


def subscribe(name: str, handler: Handler) -> None:
    if handler not in _subscribers[name]:
        _subscribers[name].append(handler)


def unsubscribe(name: str, handler: Handler) -> None:
    if handler in _subscribers[name]:
        _subscribers[name].remove(handler)


def publish(name: str, *, account_id: int, **payload: Any) -> None:
    """Deliver the event to every subscriber once the current transaction commits."""
    event = DomainEvent(name=name, account_id=account_id, payload=payload)
    transaction.on_commit(lambda: _dispatch(event))


def _dispatch(event: DomainEvent) -> None:
    for handler in list(_subscribers[event.name]):
        try:
            handler(event)
        except Exception:  # one broken subscriber must not stop the others
            log.exception("event handler %s failed for %s", getattr(handler, "__name__", handler), event.name)
