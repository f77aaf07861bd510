"""Moving a send forward: sent < delivered < read, failed terminal, never backwards.

Every move is a compare-and-swap on the row's current status, so of two concurrent writers (the
sender storing Meta's answer, a webhook, a duplicate webhook) exactly one performs each transition.
The rule's and template's sent / delivered / read / failed figures are counted from these rows
(automation.services.counters), so they need no bookkeeping here.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from automation.models import MessageSend

Status = MessageSend.Status
RANK = {Status.QUEUED: 0, Status.SENDING: 1, Status.UNKNOWN: 2, Status.SENT: 3, Status.DELIVERED: 4, Status.READ: 5}
# Milestones a move passes: reaching read from sent also means it was delivered.
MILESTONES = ((Status.SENT, "sent_at"), (Status.DELIVERED, "delivered_at"), (Status.READ, "read_at"))


@dataclass(frozen=True)
class Outcome:
    moved: bool
    previous: str
    current: str


def advance(send_id: int, new_status: str, *, at: dt.datetime | None = None, wamid: str = "",
            error_code: int | None = None, error_title: str = "", error_details: str = "",
            pricing_category: str = "", billable: bool | None = None, skip_reason: str = "") -> Outcome:
    """Move the send to ``new_status`` if that is forward; store what the status carries either way."""
    at = at or timezone.now()
    extra = {}
    if pricing_category:
        extra["pricing_category"] = pricing_category[:32]
    if billable is not None:
        extra["billable"] = billable
    if extra:
        MessageSend.objects.filter(pk=send_id).update(**extra)
    for _ in range(5):  # compare-and-swap: retried only when another writer moved the row meanwhile
        current = MessageSend.objects.filter(pk=send_id).values("status", "meta_message_id").first()
        if current is None:
            return Outcome(False, "", "")
        previous = current["status"]
        changes = _transition(previous, new_status, at)
        if changes is None:
            if wamid and not current["meta_message_id"]:
                _store_wamid(send_id, wamid)
            return Outcome(False, previous, previous)
        if wamid and not current["meta_message_id"]:
            changes["meta_message_id"] = wamid[:128]
        if new_status == Status.FAILED:
            changes.update(error_code=error_code, error_title=error_title[:255], error_details=error_details)
        if new_status == Status.SKIPPED:
            changes["skip_reason"] = skip_reason
        try:
            with transaction.atomic():
                if MessageSend.objects.filter(pk=send_id, status=previous).update(**changes, updated_at=timezone.now()):
                    return Outcome(True, previous, new_status)
        except IntegrityError:  # the wamid is another send's: keep the first holder, move this one without it
            changes.pop("meta_message_id", None)
            wamid = ""
    return Outcome(False, previous, previous)


def _transition(previous: str, new_status: str, at: dt.datetime) -> dict | None:
    if previous in (Status.FAILED, Status.SKIPPED):
        return None
    if new_status in (Status.FAILED, Status.SKIPPED):
        return {"status": new_status, **({"failed_at": at} if new_status == Status.FAILED else {})}
    if RANK.get(new_status, -1) <= RANK.get(previous, -1):
        return None
    changes: dict = {"status": new_status}
    for status, time_field in MILESTONES:
        if RANK[previous] < RANK[status] <= RANK[new_status]:
            changes[time_field] = at
    return changes


def _store_wamid(send_id: int, wamid: str) -> None:
    try:
        with transaction.atomic():
            MessageSend.objects.filter(pk=send_id, meta_message_id="").update(meta_message_id=wamid[:128])
    except IntegrityError:  # another send already holds this wamid: keep the first
        pass
