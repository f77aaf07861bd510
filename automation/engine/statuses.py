"""Moving a send forward: sent < delivered < read, failed terminal, never backwards.

Every move is a compare-and-swap on the row's current status, so of two concurrent writers (the
sender storing Meta's answer, a webhook, a duplicate webhook) exactly one performs each transition.
The rule's and template's sent / delivered / read / failed figures are counted from these rows
(automation.services.counters), so they need no bookkeeping here.

``advance_many`` applies a batch of webhook statuses: the plain moves that share their transition take one
conditional UPDATE together, the others go through ``advance`` one by one.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from django.db import IntegrityError, InterfaceError, OperationalError, transaction
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
    extra = _pricing(pricing_category, billable)
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


@dataclass(frozen=True)
class Move:
    """One status for one send, with what ``advance`` takes. ``seen_status`` / ``seen_wamid``: the send's status
    and stored wamid as the caller just read them (a compare-and-swap checks the status again)."""
    send_id: int
    new_status: str
    at: dt.datetime
    seen_status: str
    seen_wamid: str
    wamid: str = ""
    error_code: int | None = None
    error_title: str = ""
    error_details: str = ""
    pricing_category: str = ""
    billable: bool | None = None


def advance_many(moves: list[Move]) -> list[Outcome | Exception]:
    """``advance`` for each move, in order; one Outcome per move (or the exception ``advance`` raised for it,
    unless the connection was lost: that one fails the whole call).

    A plain move (forward, not to failed or skipped, no wamid to store, the first move of its send in the batch)
    joins the others with the same previous status, new status, milestone times and pricing in one
    compare-and-swap UPDATE (pricing in the same statement). When the UPDATE moves fewer rows than it names
    (another writer moved some meanwhile), the rows not at the new status go through ``advance``, as does
    every other move (after the groups, so a send's later statuses follow its first). A status that does not
    move the send and stores nothing is answered from the status read."""
    outcomes: list[Outcome | Exception | None] = [None] * len(moves)
    groups: dict[tuple, list[int]] = defaultdict(list)
    one_by_one: list[int] = []
    seen: set[int] = set()
    for n, move in enumerate(moves):
        first = move.send_id not in seen
        seen.add(move.send_id)
        previous, stored_wamid = move.seen_status, move.seen_wamid
        extra = _pricing(move.pricing_category, move.billable)
        if not first or move.new_status in (Status.FAILED, Status.SKIPPED) or (move.wamid and not stored_wamid):
            one_by_one.append(n)
            continue
        changes = _transition(previous, move.new_status, move.at)
        if changes is None:
            if extra:
                one_by_one.append(n)  # a status that does not move the send still stores its pricing
            else:
                outcomes[n] = Outcome(False, previous, previous)
            continue
        groups[(previous, move.new_status, tuple(sorted(changes.items())), tuple(sorted(extra.items())))].append(n)
    for (previous, new_status, changes, extra), members in groups.items():
        ids = [moves[n].send_id for n in members]
        moved = MessageSend.objects.filter(pk__in=ids, status=previous).update(**dict(changes), **dict(extra),
                                                                                updated_at=timezone.now())
        if moved < len(ids):  # another writer moved some of them meanwhile
            now_at = dict(MessageSend.objects.filter(pk__in=ids).values_list("pk", "status"))
            there = [n for n in members if now_at.get(moves[n].send_id) == new_status]
            if there and extra:  # moved by the other writer, maybe: the pricing is stored all the same
                MessageSend.objects.filter(pk__in=[moves[n].send_id for n in there]).update(**dict(extra))
            one_by_one += [n for n in members if n not in there]
            members = there
        for n in members:
            outcomes[n] = Outcome(True, previous, new_status)
    for n in sorted(one_by_one):
        move = moves[n]
        try:
            outcomes[n] = advance(move.send_id, move.new_status, at=move.at, wamid=move.wamid, error_code=move.error_code,
                                  error_title=move.error_title, error_details=move.error_details,
                                  pricing_category=move.pricing_category, billable=move.billable)
        except (OperationalError, InterfaceError):
            raise  # the connection: the whole batch is retried
        except Exception as exc:  # noqa: BLE001 - a value no column holds fails its own status, not the batch's
            outcomes[n] = exc
    return outcomes  # type: ignore[return-value]  # every entry is set above


def _pricing(pricing_category: str, billable: bool | None) -> dict:
    extra: dict = {}
    if pricing_category:
        extra["pricing_category"] = pricing_category[:32]
    if billable is not None:
        extra["billable"] = billable
    return extra


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
