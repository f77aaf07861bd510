"""django-q2 entry points of automation: take ids, reload rows, call a service, return a short string."""
from __future__ import annotations

from crm_marketing.errors import DomainError
from crm_marketing.graph import GraphError
from crm_marketing.models import Account
from meta_oauth.services import client_for_account, note_graph_error


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


def sync_account_templates(account_id: int) -> str:
    """One account's templates (queued by POST /crm/marketing/hsm/templates/sync and the admin action)."""
    from automation.services.templates import sync_templates

    account = Account.objects.filter(pk=account_id).first()
    if account is None:
        return f"account {account_id}: gone"
    try:
        return sync_templates(account, client=client_for_account(account)).summary()
    except DomainError as error:  # not connected any more, no channel selected
        return f"{account.slug}: skipped, {error.message}"
    except GraphError as error:
        note_graph_error(account, error)
        raise  # the task fails and shows Meta's error; the schedule tries again


def sync_all_templates() -> str:
    """Scheduled every 6 hours: the templates of every account with Meta connected and a WhatsApp channel,
    one account's failure not stopping the others."""
    from automation.services.templates import syncable_accounts, sync_templates

    outcomes = []
    for account in syncable_accounts():
        try:
            outcomes.append(sync_templates(account, client=client_for_account(account)).summary())
        except DomainError as error:
            outcomes.append(f"{account.slug}: skipped, {error.message}")
        except GraphError as error:
            note_graph_error(account, error)
            outcomes.append(f"{account.slug}: Meta failed, {error}")
    return "; ".join(outcomes) or "no account with a WhatsApp channel"
