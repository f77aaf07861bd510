"""/hub/marketing: a plain Django page with the Meta connection of the user's account.

It reads our database only (no Meta call on page load); its buttons call the JSON endpoints
(/crm/auth/meta/*, /crm/marketing/*) with the session cookie and the CSRF token.
"""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from crm_marketing.tenancy import MANAGER_ROLES, MARKETING_ROLES, Membership
from marketing.models import AdAccount
from meta_oauth.services import connection_flags, connection_for

META_ERRORS = {
    "access_denied": "The Meta dialog was cancelled or the permissions were declined.",
    "invalid_state": "That Meta sign-in link expired or was already used. Start again with Connect Meta.",
    "token_exchange_failed": "Meta did not confirm the connection. Try again in a minute.",
    "rate_limited": "Too many attempts. Wait a minute and try again.",
}


def _membership(request) -> tuple[Membership | None, list[Membership]]:
    """The membership the page acts for: ?account=slug (remembered in the session), else the only one."""
    memberships = list(Membership.objects.select_related("account").filter(user=request.user).order_by("account__name"))
    wanted = request.GET.get("account")
    if wanted and any(m.account.slug == wanted for m in memberships):
        request.session["account_slug"] = wanted
    slug = request.session.get("account_slug")
    chosen = next((m for m in memberships if m.account.slug == slug), None)
    if chosen is None and len(memberships) == 1:
        chosen = memberships[0]
    return chosen, memberships


@login_required
@require_GET
def hub_marketing(request):
    membership, memberships = _membership(request)
    context = {
        "membership": membership,
        "memberships": memberships,
        "meta_connected_message": request.GET.get("meta") == "connected",
        "meta_error": META_ERRORS.get(request.GET.get("meta_error", ""), "Meta connection failed.") if request.GET.get("meta_error") else "",
        "urls": {
            "auth_url": reverse("meta_oauth:url"),
            "disconnect": reverse("meta_oauth:disconnect"),
            "portfolios": reverse("marketing:meta-portfolios"),
            "accounts": reverse("marketing:meta-accounts"),
            "connect": reverse("marketing:connect"),
        },
    }
    if membership is None or membership.role not in MARKETING_ROLES:
        status = 403 if membership is not None else 200
        return render(request, "hub/marketing.html", context, status=status)
    connection = connection_for(membership.account)
    connected, needs_reconnect = connection_flags(connection)
    expires_at = connection.token_expires_at if connection else None
    context.update(
        can_manage=membership.role in MANAGER_ROLES,
        connection=connection,
        connected=connected,
        needs_reconnect=needs_reconnect,
        days_left=max(0, (expires_at - timezone.now()).days) if expires_at else None,
        ad_account=AdAccount.objects.filter(account=membership.account, is_selected=True).first(),
    )
    return render(request, "hub/marketing.html", context)


urlpatterns = [path("", hub_marketing, name="hub-marketing")]
