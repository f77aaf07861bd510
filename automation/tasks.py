"""django-q2 entry points of automation: take ids, reload rows, call a service, return a short string."""
from __future__ import annotations

from crm_marketing.models import Account


def run_send_pass(account_id: int | None = None, budget_seconds: float | None = None) -> str:
    """Claim and send due sends until none is due (queued on commit after planning, and by dispatch)."""
    from automation.engine.passes import run_pass

    return "send pass: " + run_pass(account_id=account_id, budget_seconds=budget_seconds).summary()


def dispatch_due_sends() -> str:
    """Scheduled every minute: queue as many send passes as the due sends need (they run in parallel)."""
    from django_q.tasks import async_task

    from automation.engine.claiming import expire_abandoned
    from automation.engine.passes import passes_needed

    expire_abandoned()
    count = passes_needed()
    for _ in range(count):
        async_task("automation.tasks.run_send_pass", task_name="automation-send-pass")
    return f"queued {count} send pass(es)"


def plan_no_reply_sends() -> str:
    """Scheduled every 15 minutes: follow-ups for leads who did not answer an automatic message."""
    from automation.engine.planning import plan_no_reply

    created = sum(plan_no_reply(account) for account in Account.objects.all())
    return f"planned {created} no_reply send(s)"


def reconcile_sends() -> str:
    """Scheduled hourly: abandoned sends become unknown; unknown ones a day old fail as unconfirmed."""
    from automation.engine.passes import reconcile

    return reconcile()
