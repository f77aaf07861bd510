"""Queue a django-q2 task that must only run once the current transaction has committed."""
from __future__ import annotations

import logging
import time
from typing import Any

from django.db import DEFAULT_DB_ALIAS, transaction

log = logging.getLogger(__name__)


def broker_is_this_database() -> bool:
    """True with the ORM broker on the default database (the embedded default) outside sync mode."""
    from django_q.conf import Conf

    return bool(Conf.ORM) and Conf.ORM == DEFAULT_DB_ALIAS and not Conf.SYNC and not Conf.BROKER_CLASS


def enqueue_after_commit(func: str, *args: Any, task_name: str, save: bool = True) -> None:
    """With the ORM broker the task row is written inside the caller's transaction: one commit
    instead of two, and the task exists exactly when the rows it reads do. With another broker
    (Redis) the task is queued on commit, ``robust`` so a broker outage never fails the write (the
    sweeps pick up what was not queued). ``save=False``: a success is not stored in django-q2's
    results (for frequent tasks whose outcome is recorded in their own rows; failures still are)."""
    from django_q.tasks import async_task

    if broker_is_this_database() and transaction.get_connection().in_atomic_block:
        async_task(func, *args, task_name=task_name, save=save)
    else:
        transaction.on_commit(lambda: async_task(func, *args, task_name=task_name, save=save), robust=True)


def queue_once(flag: str, func: str, *args: Any, flag_seconds: int) -> None:
    """Queue ``func`` unless a task under the cache key ``flag`` is queued already and has not started: that
    one will find the rows committed before this call, as long as the task clears the flag (``clear_flag``)
    before it looks for them; what is committed after that queues a new one. Without a cache every process
    shares (the embedded default with a separate qcluster) or while the cache is down, every call queues a
    task. The flag expires after ``flag_seconds``: a queued task the broker lost holds new ones back no longer."""
    from django.conf import settings
    from django.core.cache import cache
    from django_q.conf import Conf
    from django_q.tasks import async_task

    from crm_marketing.ratelimits import CACHE_DOWN

    flagged = settings.CACHE_IS_SHARED or Conf.SYNC
    if flagged:
        try:
            if not cache.add(flag, 1, timeout=flag_seconds):
                return
        except CACHE_DOWN as exc:
            log.warning("task flag %s unavailable (%s); queueing anyway", flag, type(exc).__name__)
            flagged = False
    try:
        async_task(func, *args, save=False)
    except Exception:
        if flagged:
            clear_flag(flag)  # nothing is queued: the next caller must try again
        raise


def gather(seconds: float) -> None:
    """Before a queued drain or fold claims its rows, let a burst of writes gather: while its flag is still set the
    writes queue no task of their own, so the task's fixed cost (the task, the claim, the writes) is paid once per
    burst. Only with the shared flag (a separate qcluster) and outside sync mode; the work waits, the writers do not."""
    from django.conf import settings
    from django_q.conf import Conf

    if seconds > 0 and settings.CACHE_IS_SHARED and not Conf.SYNC:
        time.sleep(seconds)


def clear_flag(flag: str) -> None:
    from django.core.cache import cache

    from crm_marketing.ratelimits import CACHE_DOWN

    try:
        cache.delete(flag)
    except CACHE_DOWN as exc:  # it expires on its own; the sweeps cover the rest
        log.warning("task flag %s not cleared (%s)", flag, type(exc).__name__)
