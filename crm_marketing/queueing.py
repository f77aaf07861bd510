"""Queue a django-q2 task that must only run once the current transaction has committed."""
from __future__ import annotations

from typing import Any

from django.db import DEFAULT_DB_ALIAS, transaction


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
