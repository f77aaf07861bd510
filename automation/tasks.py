"""django-q2 entry points: take ids, reload rows, call a service, return a short result string."""
from __future__ import annotations

from crm_marketing.errors import DomainError
from crm_marketing.graph import GraphError
from crm_marketing.models import Account
from meta_oauth.services import client_for_account, note_graph_error


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
