"""Moving a send forward: sent < delivered < read, failed terminal, never backwards.

Every move is a compare-and-swap on the row's current status, so of two concurrent writers (the
sender storing Meta's answer, a webhook, a duplicate webhook) exactly one performs each transition,
and only that one bumps the template's and the rule's counters, in the same transaction.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from automation.models import AutomationRule, MessageSend, MessageTemplate

Status = MessageSend.Status
RANK = {Status.QUEUED: 0, Status.SENDING: 1, Status.UNKNOWN: 2, Status.SENT: 3, Status.DELIVERED: 4, Status.READ: 5}
# Milestones a move passes: reaching read from sent also means it was delivered.
MILESTONES = ((Status.SENT, "sent_at", "sent_count"), (Status.DELIVERED, "delivered_at", "delivered_count"),
              (Status.READ, "read_at", "read_count"))


@dataclass(frozen=True)
class Outcome:
    moved: bool
    previous: str
    current: str


def advance(send_id: int, new_status: str, *, at: dt.datetime | None = None, wamid: str = "",
            error_code: int | None = None, error_title: str = "", error_details: str = "",
            pricing_category: str = "", billable: bool | None = None, skip_reason: str = "",
            expected: str | None = None, template_id: int | None = None, rule_id: int | None = None) -> Outcome:
    """Move the send to ``new_status`` if that is forward; store what the status carries either way."""
    at = at or timezone.now()
    extra = {}
    if pricing_category:
        extra["pricing_category"] = pricing_category[:32]
    if billable is not None:
        extra["billable"] = billable
    if extra:
        MessageSend.objects.filter(pk=send_id).update(**extra)
    if expected is not None and extra == {} and wamid:  # the sender's own move: one update when nobody raced it
        changes, counters = _transition(expected, new_status, at)
        try:
            with transaction.atomic():
                if changes is not None and MessageSend.objects.filter(pk=send_id, status=expected, meta_message_id="").update(
                        **changes, meta_message_id=wamid[:128], updated_at=timezone.now()):
                    _bump(template_id, rule_id, counters)
                    return Outcome(True, expected, new_status)
        except IntegrityError:  # another send holds the wamid: the general path below sorts it out
            pass
    for _ in range(5):  # compare-and-swap: retried only when another writer moved the row meanwhile
        current = MessageSend.objects.filter(pk=send_id).values("status", "rule_id", "template_id", "meta_message_id").first()
        if current is None:
            return Outcome(False, "", "")
        previous = current["status"]
        changes, counters = _transition(previous, new_status, at)
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
                    _bump(current["template_id"], current["rule_id"], counters)
                    return Outcome(True, previous, new_status)
        except IntegrityError:  # the wamid is another send's: keep the first holder, move this one without it
            changes.pop("meta_message_id", None)
            wamid = ""
    return Outcome(False, previous, previous)


def _transition(previous: str, new_status: str, at: dt.datetime) -> tuple[dict | None, list[str]]:
    if previous in (Status.FAILED, Status.SKIPPED):
        return None, []
    if new_status in (Status.FAILED, Status.SKIPPED):
        changes = {"status": new_status}
        if new_status == Status.FAILED:
            changes["failed_at"] = at
        return changes, (["failed_count"] if new_status == Status.FAILED else [])
    if RANK.get(new_status, -1) <= RANK.get(previous, -1):
        return None, []
    changes: dict = {"status": new_status}
    counters = []
    for status, time_field, counter in MILESTONES:
        if RANK[previous] < RANK[status] <= RANK[new_status]:
            changes[time_field] = at
            counters.append(counter)
    return changes, counters


def _bump(template_id: int | None, rule_id: int | None, counters: list[str]) -> None:
    if not counters:
        return
    increments = {name: F(name) + 1 for name in counters}
    if template_id:
        MessageTemplate.objects.filter(pk=template_id).update(**increments)
    if rule_id:
        AutomationRule.objects.filter(pk=rule_id).update(**increments)


def _store_wamid(send_id: int, wamid: str) -> None:
    try:
        with transaction.atomic():
            MessageSend.objects.filter(pk=send_id, meta_message_id="").update(meta_message_id=wamid[:128])
    except IntegrityError:  # another send already holds this wamid: keep the first
        pass
