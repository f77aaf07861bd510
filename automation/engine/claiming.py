"""Claiming due sends for one worker, and what happens to sends a worker abandoned.

A claim moves ``queued -> sending`` and stamps ``claimed_at``. On PostgreSQL a batch is picked
with ``select_for_update(skip_locked=True)`` so concurrent workers take disjoint rows; elsewhere
each row is taken with its own conditional update (exactly one worker's update matches).
Just before its POST a send turns ``unknown`` (it may reach Meta from then on): a worker killed
after that leaves it ``unknown``, settled by a status webhook or, after ``UNCONFIRMED_AFTER``,
failed as unconfirmed, never re-sent. A ``sending`` row whose lease ran out never left: re-queued.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Iterable

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from automation.models import MessageSend

LEASE = dt.timedelta(minutes=2)
UNCONFIRMED_AFTER = dt.timedelta(hours=24)
Status = MessageSend.Status


def due_filter(now: dt.datetime) -> Q:
    return Q(status=Status.QUEUED, due_at__lte=now) & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))


@dataclass(frozen=True)
class Claim:
    """Sends one worker now owns (status ``sending``, ``claimed_at`` = ``at``), in due order."""

    at: dt.datetime
    ids: list[int] = field(default_factory=list)
    account_of: dict[int, int] = field(default_factory=dict)  # send id -> account id
    retrying: frozenset[int] = frozenset()  # sends that waited for a retry time (the limiter's queue, an error)


def claim_batch(*, limit: int = 100, account_id: int | None = None, exclude_accounts: Iterable[int] = (),
                now: dt.datetime | None = None) -> Claim:
    """Up to ``limit`` due sends, skipping accounts whose number is full this second (``exclude_accounts``)."""
    now = now or timezone.now()
    due = MessageSend.objects.filter(due_filter(now))
    if account_id is not None:
        due = due.filter(account_id=account_id)
    exclude_accounts = list(exclude_accounts)
    if exclude_accounts:
        due = due.exclude(account_id__in=exclude_accounts)
    due = due.order_by("due_at", "id")
    taken = {"status": Status.SENDING, "claimed_at": now, "updated_at": now}
    columns = ("id", "account_id", "next_attempt_at")
    if connection.vendor == "postgresql":
        with transaction.atomic():
            rows = list(due.select_for_update(skip_locked=True).values_list(*columns)[:limit])
            if rows:
                MessageSend.objects.filter(id__in=[row[0] for row in rows], status=Status.QUEUED).update(**taken)
    else:
        rows = [row for row in due.values_list(*columns)[:limit]
                if MessageSend.objects.filter(due_filter(now), id=row[0]).update(**taken)]
    return Claim(now, [row[0] for row in rows], {pk: account for pk, account, _ in rows},
                 frozenset(pk for pk, _, retry_at in rows if retry_at is not None))


def release(send_id: int, claimed_at: dt.datetime, *, retry_at: dt.datetime, count_attempt: bool = True, **fields) -> bool:
    """Give a claimed send back to the queue for ``retry_at`` (only if this claim still holds it)."""
    changes = {"status": Status.QUEUED, "next_attempt_at": retry_at, "claimed_at": None, "updated_at": timezone.now(), **fields}
    if count_attempt:
        changes["attempts"] = F("attempts") + 1
    # SENDING: the request never left; UNKNOWN: Meta answered with an error, so it did not take it.
    return bool(MessageSend.objects.filter(pk=send_id, status__in=(Status.SENDING, Status.UNKNOWN),
                                           claimed_at=claimed_at).update(**changes))


def release_many(send_ids: list[int], claimed_at: dt.datetime, *, retry_at: dt.datetime, count_attempt: bool = False) -> int:
    """``release`` for several sends of one claim at once (one UPDATE), e.g. the ones the limiter
    had no slot for; returns how many this claim still held."""
    if not send_ids:
        return 0
    changes = {"status": Status.QUEUED, "next_attempt_at": retry_at, "claimed_at": None, "updated_at": timezone.now()}
    if count_attempt:
        changes["attempts"] = F("attempts") + 1
    return MessageSend.objects.filter(pk__in=send_ids, status__in=(Status.SENDING, Status.UNKNOWN),
                                      claimed_at=claimed_at).update(**changes)


def release_each(retry_at: dict[int, dt.datetime], claimed_at: dt.datetime) -> int:
    """``release_many`` with a retry time per send (one UPDATE), e.g. the limiter's queue times."""
    from automation.engine.bulk import update_sends

    return len(update_sends({send_id: {"next_attempt_at": at} for send_id, at in retry_at.items()},
                            set_all={"status": Status.QUEUED, "claimed_at": None, "updated_at": timezone.now()},
                            where={"status": Status.SENDING, "claimed_at": claimed_at}))


def lease() -> dt.timedelta:
    return dt.timedelta(seconds=float(getattr(settings, "AUTOMATION_SEND_LEASE_SECONDS", LEASE.total_seconds())))


def expire_abandoned(*, now: dt.datetime | None = None) -> int:
    """``sending`` rows past their lease: the worker died or hung before its request left (the row
    turns ``unknown`` just before the POST), so they go back to the queue."""
    now = now or timezone.now()
    return MessageSend.objects.filter(status=Status.SENDING, claimed_at__lt=now - lease()).update(
        status=Status.QUEUED, claimed_at=None, next_attempt_at=None, updated_at=now)


def fail_unconfirmed(*, now: dt.datetime | None = None) -> int:
    """``unknown`` rows nobody confirmed within ``UNCONFIRMED_AFTER``: failed as unconfirmed."""
    now = now or timezone.now()
    stale = MessageSend.objects.filter(status=Status.UNKNOWN).filter(
        Q(claimed_at__lt=now - UNCONFIRMED_AFTER) | Q(claimed_at__isnull=True, updated_at__lt=now - UNCONFIRMED_AFTER))
    return stale.update(status=Status.FAILED, error_title="unconfirmed",
                        error_details="No status from Meta within 24 h of a send that may not have reached it.",
                        failed_at=now, updated_at=now)
