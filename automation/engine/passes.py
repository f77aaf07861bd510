"""One send pass: claim due sends in batches and send them until none is due (or the time budget is
spent), recording a heartbeat row the stats read. Reconciliation of abandoned and unconfirmed sends.

A pass remembers which accounts' numbers had no slot left in the current second and leaves their
sends out of its next claims until the second turns, so it spends the second on numbers that can
still send instead of claiming and re-queueing sends of a full one."""
from __future__ import annotations

import datetime as dt
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from django.conf import settings
from django.utils import timezone

from automation.engine import claiming, limiter
from automation.engine.models import EnginePass
from automation.engine.sender import SendSession, send_batch
from automation.models import MessageSend

BATCH = 200
# Sends re-queued for the next second (limiter) keep the pass alive this long instead of waiting
# for the next scheduled pass.
SOON = dt.timedelta(seconds=2)
IDLE_POLL_SECONDS = 0.1
# A live worker holds a claim for a second or so; one held longer probably belongs to a dead worker.
STALE_CLAIM = dt.timedelta(seconds=5)
STALE_POLL_SECONDS = 1.0


@dataclass
class PassResult:
    claimed: int = 0
    outcomes: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        parts = ", ".join(f"{count} {name}" for name, count in sorted(self.outcomes.items()) if count)
        return f"{self.claimed} claimed" + (f": {parts}" if parts else "")


def run_pass(*, account_id: int | None = None, batch: int | None = None, budget_seconds: float | None = None,
             progress: Callable[[PassResult], None] | None = None) -> PassResult:
    budget = budget_seconds if budget_seconds is not None else float(getattr(settings, "AUTOMATION_PASS_SECONDS", 50))
    deadline = time.monotonic() + budget
    batch = batch or int(getattr(settings, "AUTOMATION_PASS_BATCH", BATCH))
    heartbeat = EnginePass.objects.create()
    result, session = PassResult(), SendSession()
    full_until: dict[int, int] = {}  # account id -> the second its number is full in
    try:
        claiming.expire_abandoned()
        limiter.forget_old_slots()
        while time.monotonic() < deadline:
            second = int(time.time())
            full = [account for account, until in full_until.items() if until >= second]
            claim = claiming.claim_batch(limit=batch, account_id=account_id, exclude_accounts=full)
            if not claim.ids:
                wait = _idle_wait(account_id, bool(full), second)
                if wait is None:
                    break
                time.sleep(wait)
                continue
            result.claimed += len(claim.ids)
            done = send_batch(claim, session)
            result.outcomes.update(done.outcomes)
            full_until.update(dict.fromkeys(done.full_accounts, done.second))
            if progress:
                progress(result)
    except Exception as exc:
        _finish(heartbeat, result, ok=False, note=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        session.close()
    _finish(heartbeat, result, ok=True)
    return result


def _idle_wait(account_id: int | None, some_full: bool, second: int) -> float | None:
    """How long to wait before claiming again, or None when the pass is done: sends due soon (only
    full numbers left: until the next second), or sends a worker claimed and seems to have died with
    (re-queued as their lease runs out, so they do not wait for the next scheduled pass)."""
    now = timezone.now()
    due = MessageSend.objects.filter(claiming.due_filter(now + SOON))
    stale = MessageSend.objects.filter(status=MessageSend.Status.SENDING, claimed_at__lt=now - STALE_CLAIM)
    if account_id is not None:
        due, stale = due.filter(account_id=account_id), stale.filter(account_id=account_id)
    if due.exists():
        return max(0.005, second + 1 - time.time()) if some_full else IDLE_POLL_SECONDS
    if stale.exists():
        claiming.expire_abandoned()
        return STALE_POLL_SECONDS
    return None


def _finish(heartbeat: EnginePass, result: PassResult, *, ok: bool, note: str = "") -> None:
    EnginePass.objects.filter(pk=heartbeat.pk).update(
        finished_at=timezone.now(), ok=ok, claimed=result.claimed, sent=result.outcomes.get("sent", 0),
        summary=(note or result.summary())[:255])
    EnginePass.objects.filter(started_at__lt=timezone.now() - dt.timedelta(days=2)).delete()


def passes_needed(*, batch: int | None = None, max_parallel: int | None = None) -> int:
    """How many passes to queue now so the due sends go out in parallel (at least 1 when any is due)."""
    batch = batch or int(getattr(settings, "AUTOMATION_PASS_BATCH", BATCH))
    max_parallel = max_parallel or int(getattr(settings, "AUTOMATION_MAX_PARALLEL_PASSES", 4))
    due = MessageSend.objects.filter(claiming.due_filter(timezone.now() + SOON)).count()
    return min(max_parallel, math.ceil(due / batch)) if due else 0


def reconcile() -> str:
    """Abandoned ``sending`` rows go back to the queue; ``unknown`` rows older than a day fail as unconfirmed."""
    abandoned = claiming.expire_abandoned()
    unconfirmed = claiming.fail_unconfirmed()
    return f"{abandoned} abandoned send(s) queued again, {unconfirmed} unconfirmed send(s) failed"
