"""The one definition of the send figures a rule and a template show: counted from their
``MessageSend`` rows, the single source of truth (no counter columns to keep in step).

A send counts as sent, delivered or read once it reached that status, also if it failed afterwards
(a failed status after delivery keeps ``delivered_at``), so sent >= delivered >= read.
"""
from __future__ import annotations

from django.db.models import Count, Q

from automation.models import MessageSend

COUNTER_NAMES = ("sends", "sent", "delivered", "read", "failed", "skipped")
_S = MessageSend.Status


def counter_filters(prefix: str = "") -> dict[str, Q | None]:
    """Each figure's filter over sends; ``prefix`` reaches them from another model (``"sends__"``)."""
    def q(**lookups) -> Q:
        return Q(**{f"{prefix}{name}": value for name, value in lookups.items()})

    return {
        "sends": None,
        "sent": q(status__in=[_S.SENT, _S.DELIVERED, _S.READ]) | q(sent_at__isnull=False),
        "delivered": q(status__in=[_S.DELIVERED, _S.READ]) | q(delivered_at__isnull=False),
        "read": q(status=_S.READ) | q(read_at__isnull=False),
        "failed": q(status=_S.FAILED),
        "skipped": q(status=_S.SKIPPED),
    }


def counter_aggregates(prefix: str = "", names: tuple[str, ...] = COUNTER_NAMES) -> dict[str, Count]:
    filters = counter_filters(prefix)
    return {name: Count(f"{prefix}pk", filter=filters[name]) for name in names}


def counters_by(key: str, ids: list[int]) -> dict[int, dict[str, int]]:
    """``key``: ``"rule_id"`` or ``"template_id"``. Every id gets all figures (0 without sends)."""
    counters = {pk: dict.fromkeys(COUNTER_NAMES, 0) for pk in ids}
    if ids:
        rows = MessageSend.objects.filter(**{f"{key}__in": ids}).values(key).annotate(**counter_aggregates()).order_by()
        for row in rows:
            counters[row[key]] = {name: row[name] for name in COUNTER_NAMES}
    return counters
