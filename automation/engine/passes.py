"""One send pass: claim due sends in batches and send them until none is due (or the time budget is
spent), recording a heartbeat row the stats read. Reconciliation of abandoned and unconfirmed sends."""
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
from automation.engine.sender import SendSession, send_claimed
from automation.models import MessageSend

BATCH = 100
# Sends re-queued for the next second (limiter) keep the pass alive this long instead of waiting
# for the next scheduled pass.
SOON = dt.timedelta(seconds=2)
IDLE_POLL_SECONDS = 0.1


@dataclass
class PassResult:
    claimed: int = 0
    outcomes: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        parts = ", ".join(f"{count} {name}" for name, count in sorted(self.outcomes.items()))
        return f"{self.claimed} claimed" + (f": {parts}" if parts else "")


def run_pass(*, account_id: int | None = None, batch: int | None = None, budget_seconds: float | None = None,
             progress: Callable[[PassResult], None] | None = None) -> PassResult:
    budget = budget_seconds if budget_seconds is not None else float(getattr(settings, "AUTOMATION_PASS_SECONDS", 50))
    deadline = time.monotonic() + budget
    batch = batch or int(getattr(settings, "AUTOMATION_PASS_BATCH", BATCH))
    heartbeat = EnginePass.objects.create()
    result, session = PassResult(), SendSession()
    try:
        claiming.expire_abandoned()
        limiter.forget_old_slots()
        while time.monotonic() < deadline:
            ids = claiming.claim_due(limit=batch, account_id=account_id)
            if not ids:
                if not _due_soon(account_id):
                    break
                time.sleep(IDLE_POLL_SECONDS)
                continue
            result.claimed += len(ids)
            for send_id in ids:
                result.outcomes[send_claimed(send_id, session)] += 1
            if progress:
                progress(result)
    except Exception as exc:
        _finish(heartbeat, result, ok=False, note=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        session.close()
    _finish(heartbeat, result, ok=True)
    return result


def _due_soon(account_id: int | None) -> bool:
    horizon = timezone.now() + SOON
    soon = MessageSend.objects.filter(claiming.due_filter(horizon))
    if account_id is not None:
        soon = soon.filter(account_id=account_id)
    return soon.exists()


def _finish(heartbeat: EnginePass, result: PassResult, *, ok: bool, note: str = "") -> None:
    EnginePass.objects.filter(pk=heartbeat.pk).update(
        finished_at=timezone.now(), ok=ok, claimed=result.claimed, sent=result.outcomes.get("sent", 0),
        summary=(note or result.summary())[:255])
    EnginePass.objects.filter(started_at__lt=timezone.now() - dt.timedelta(days=2)).delete()


def passes_needed(*, batch: int = BATCH, max_parallel: int | None = None) -> int:
    """How many passes to queue now so the due sends go out in parallel (at least 1 when any is due)."""
    max_parallel = max_parallel or int(getattr(settings, "AUTOMATION_MAX_PARALLEL_PASSES", 4))
    due = MessageSend.objects.filter(claiming.due_filter(timezone.now() + SOON)).count()
    return min(max_parallel, math.ceil(due / batch)) if due else 0


def reconcile() -> str:
    """Abandoned ``sending`` rows go back to the queue; ``unknown`` rows older than a day fail as unconfirmed."""
    abandoned = claiming.expire_abandoned()
    unconfirmed = claiming.fail_unconfirmed()
    return f"{abandoned} abandoned send(s) queued again, {unconfirmed} unconfirmed send(s) failed"
