"""A cache of the ROI reads that cannot serve a stale figure.

``figures.collect`` reads two things: the rollups and the repeat sales behind the distinct customers.
Both change only in a transaction that takes the account's rollup lock (``rollups.lock_account``: the
folds of marked cells, rebuilds), and that lock gives the account's ``RollupVersion`` a new random
token in the same transaction. CRM writes and insights upserts only mark cells
(marketing.services.rollup_marks) and leave the token alone: ``collect`` corrects the marked cells on
top of what this cache returns, in the same REPEATABLE READ snapshot as the token it read
(marketing.stats.pending), so a cached read counts a write committed after it was cached.

A cached read is stored with the token read *before* its queries and served only while the account's
current token is still that one, so:

- a committed rollup write changes the token, and every read that starts after the commit misses;
- a read stores the rows of its token's snapshot (``collect`` reads in one REPEATABLE READ
  transaction; a caller's own transaction at READ COMMITTED sees rows at least as new), never older;
- a token is never reused (random, in the database, not in the cache), so neither a Redis restart
  nor a restored database brings an old entry back.

One entry per (account, read): the token is stored inside it, so a new token overwrites the entry
instead of piling up versions. What the endpoints add around the figures (exchange rates,
campaign names, the Meta connection, today's window) is read fresh on every request: ``collect``
caches the rollup's and the sales' figures keyed on the rates, and the hub's reads
(marketing/views/stats.py) cache their rendered JSON keyed on all of those inputs and on the
account's pending marks (marketing.stats.read_state, one statement: a write that marked cells after
the answer was cached changes the key), computing it in the snapshot the key was read in. Anything else
that changes what ``collect`` reads must take ``rollups.lock_account`` (or call ``rollup_changed``)
in its transaction, or mark the cells it changed (``rollup_marks.mark_dirty``).

``STATS_CACHE_SECONDS`` (default 600; 0 turns the cache off) only bounds memory: an entry is never
served past its token. A cache that fails (Redis down) makes the read compute, never fail.
"""
from __future__ import annotations

import hashlib
import logging
import secrets
from typing import Callable, Hashable, TypeVar

from django.conf import settings
from django.core.cache import cache

from marketing.models import RollupVersion

log = logging.getLogger(__name__)
T = TypeVar("T")
KEY_PREFIX = "marketing:stats:"


def rollup_changed(account_id: int) -> None:
    """Give the account's rollup a new version token, committed with the caller's transaction."""
    RollupVersion.objects.bulk_create([RollupVersion(account_id=account_id, token=secrets.token_hex(16))],
                                      update_conflicts=True, unique_fields=["account"], update_fields=["token"])


def cached(account_id: int, read: Hashable, compute: Callable[[], T]) -> T:
    """``compute()``, or its result cached under ``read`` for the account's current rollup version.

    ``read`` must name everything the result depends on besides the rollup and the sales (the windows,
    the grouping, the campaign, the timezone the days are cut in)."""
    token = RollupVersion.objects.filter(account_id=account_id).values_list("token", flat=True).first() if enabled() else None
    if token is None:  # off, or a rollup never written: nothing to key on
        return compute()
    entry = lookup(account_id, read, token)
    if entry is not None:
        return entry
    value = compute()
    store(account_id, read, token, value)
    return value


def enabled() -> bool:
    return settings.STATS_CACHE_SECONDS > 0


def lookup(account_id: int, read: Hashable, token: str | None):
    """What is cached under ``read`` for the rollup version ``token`` (read before the caller's other
    inputs), or None: off, no rollup yet, not cached, cached for another version, or the cache is down."""
    if token is None or not enabled():
        return None
    try:
        entry = cache.get(_key(account_id, read))
    except Exception:  # noqa: BLE001 - a cache outage costs speed, never the answer
        log.warning("stats cache unavailable; computing the read", exc_info=True)
        return None
    return entry[1] if entry is not None and entry[0] == token else None


def store(account_id: int, read: Hashable, token: str | None, value) -> None:
    """Keep ``value``, computed from the snapshot ``token`` was read in, under ``read`` for that version."""
    if token is None or not enabled():
        return
    try:
        cache.set(_key(account_id, read), (token, value), timeout=settings.STATS_CACHE_SECONDS)
    except Exception:  # noqa: BLE001
        log.warning("stats cache unavailable; result not stored", exc_info=True)


def _key(account_id: int, read: Hashable) -> str:
    return KEY_PREFIX + hashlib.sha256(repr((account_id, read)).encode()).hexdigest()
