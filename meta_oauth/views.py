"""/crm/auth/meta: start the Meta dialog (url), come back from it (callback), disconnect."""
from __future__ import annotations

import logging
from urllib.parse import urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.http import HttpResponseRedirect
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from social_core.exceptions import AuthCanceled, AuthSessionError, SocialAuthBaseException

from crm_marketing.api import AccountScopedAPIView
from crm_marketing.graph import GraphError
from crm_marketing.ratelimits import RateLimited, enforce_rate_limit
from crm_marketing.tenancy import MANAGER_ROLES
from meta_oauth import services
from meta_oauth.backends import meta_backend
from meta_oauth.serializers import AuthUrlSerializer
from meta_oauth.state import consume_state, issue_state

log = logging.getLogger(__name__)


class MetaAuthUrlView(AccountScopedAPIView):
    """GET -> {auth_url, state, expires_in}: the dialog URL with a fresh state for this session."""

    allowed_roles = MANAGER_ROLES

    @extend_schema(responses=AuthUrlSerializer)
    def get(self, request):
        issued = issue_state(request, request.account)
        return Response(AuthUrlSerializer(issued).data)


class MetaDisconnectView(AccountScopedAPIView):
    allowed_roles = MANAGER_ROLES

    @extend_schema(request=None, responses=inline_serializer("MetaDisconnected", {"disconnected": serializers.BooleanField()}))
    def post(self, request):
        services.disconnect(request.account, actor=request.user, request=request)
        return Response({"disconnected": True})


def hub_redirect(**params: str) -> HttpResponseRedirect:
    """Back to the hub page with ?meta=... or ?meta_error=... added to HUB_MARKETING_URL."""
    parts = urlsplit(settings.HUB_MARKETING_URL)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return HttpResponseRedirect(urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, "")))


@never_cache
@require_GET
def meta_callback(request):
    """Meta's redirect after the dialog. Always a 302 to the hub, never an error page.

    Our OAuthState (user + account + session, single use, 10 minutes) is checked before anything
    else; only then is the code exchanged (through the social-auth backend and the pipeline).
    """
    try:
        enforce_rate_limit(request, group="meta_oauth_callback", rate=settings.API_ANON_RATE_LIMIT)
    except RateLimited:
        return hub_redirect(meta_error="rate_limited")
    oauth_state = consume_state(request, request.GET.get("state"))
    if oauth_state is None:
        log.warning("Meta OAuth callback with an invalid, used, expired or foreign state (user %s)",
                    getattr(request.user, "pk", None))
        return hub_redirect(meta_error="invalid_state")
    if request.GET.get("error") or not request.GET.get("code"):
        log.info("Meta dialog not approved for account %s: %s", oauth_state.account_id,
                 request.GET.get("error_reason", "")[:64] or "no code")
        return hub_redirect(meta_error="access_denied")
    try:
        meta_backend(request).auth_complete(account=oauth_state.account, user=request.user, http_request=request)
    except AuthCanceled:
        return hub_redirect(meta_error="access_denied")
    except AuthSessionError:
        return hub_redirect(meta_error="invalid_state")
    except (SocialAuthBaseException, GraphError) as error:
        log.warning("Meta token exchange failed for account %s: %s", oauth_state.account_id, type(error).__name__)
        return hub_redirect(meta_error="token_exchange_failed")
    except Exception:  # a bug or a misconfiguration: still the hub, with the traceback in the log
        log.exception("Meta connect failed unexpectedly for account %s", oauth_state.account_id)
        return hub_redirect(meta_error="token_exchange_failed")
    return hub_redirect(meta="connected")
