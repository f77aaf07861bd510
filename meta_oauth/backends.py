"""The social-auth backend for Meta (Facebook Login for Business) used to *connect* an account.

It is never a way to log in to Django: it is not in AUTHENTICATION_BACKENDS (views build it with
``meta_backend(request)``), ``authenticate`` always answers None, and ``do_auth`` runs our connect
pipeline (``meta_oauth.pipeline.CONNECT_PIPELINE``) instead of social-auth's login pipeline, so
no user is ever created or logged in.

Secrets stay out of URLs: the code and long-lived exchanges and ``debug_token`` are POST forms
(Graph takes parameters in the body), app and user tokens travel in the Authorization header.
"""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import reverse
from social_core.backends.facebook import FacebookOAuth2
from social_core.exceptions import AuthInputError, AuthResponseError
from social_core.utils import handle_http_errors
from social_django.utils import load_strategy

# The permissions the hub needs (see shared/meta/oauth.json): ads, Business Manager, Lead Ads,
# Pages (leadgen webhooks) and WhatsApp Cloud API.
META_SCOPES = [
    "ads_read",
    "ads_management",
    "business_management",
    "leads_retrieval",
    "pages_show_list",
    "pages_read_engagement",
    "pages_manage_metadata",
    "whatsapp_business_management",
    "whatsapp_business_messaging",
]


def _graph_root() -> str:
    return f"{settings.META_GRAPH_URL.rstrip('/')}/{settings.META_GRAPH_API_VERSION}"


class MetaOAuth2(FacebookOAuth2):
    name = "meta"
    title = "Meta"
    DEFAULT_SCOPE = META_SCOPES
    ACCESS_TOKEN_METHOD = "POST"
    STATE_LIFETIME = 600  # seconds; our OAuthState row holds the same limit
    # Documentation only: the real URLs come from settings (authorization_url / access_token_url).
    AUTHORIZATION_URL = "{META_DIALOG_URL}/{META_GRAPH_API_VERSION}/dialog/oauth"
    ACCESS_TOKEN_URL = "{META_GRAPH_URL}/{META_GRAPH_API_VERSION}/oauth/access_token"

    # -- configuration from settings (read per call, so tests and the sandbox can repoint it) --------
    def authorization_url(self) -> str:
        return f"{settings.META_DIALOG_URL.rstrip('/')}/{settings.META_GRAPH_API_VERSION}/dialog/oauth"

    def access_token_url(self) -> str:
        return f"{_graph_root()}/oauth/access_token"

    def get_key_and_secret(self) -> tuple[str, str]:
        return settings.META_APP_ID, settings.META_APP_SECRET

    def get_scope(self) -> list[str]:
        return list(META_SCOPES)

    issued_state: str | None = None

    def get_or_create_state(self) -> str | None:
        """social-auth's per-session, single-use state; remembered so the caller can record it."""
        self.issued_state = super().get_or_create_state()
        return self.issued_state

    # -- never a Django login ----------------------------------------------------------------------
    def authenticate(self, *args, **kwargs):
        """Django's auth loop must never get a user from Meta."""
        return None

    def run_authentication(self, *args, **kwargs):
        raise AuthResponseError(self, "Meta is connected, never used to log in.", code="unsupported_feature", stage="callback")

    def get_user(self, user_id):
        return None

    # -- the callback ----------------------------------------------------------------------------------
    @handle_http_errors
    def auth_complete(self, *args, **kwargs) -> Any:
        """Validate social-auth's session state, exchange the code (POST form), run the connect pipeline.

        Callers check our own OAuthState record first; this is the second, session-side check.
        """
        self.process_error(self.data)
        if not self.data.get("code"):
            raise AuthInputError(self, parameter="code", code="missing_parameter", stage="callback")
        state = self.validate_state()
        response = self.request_access_token(
            self.access_token_url(),
            method="POST",
            data=self.auth_complete_params(state),
            headers=self.auth_headers(),
        )
        return self.do_auth(self.get_access_token(response), *args, response=response, **kwargs)

    def do_auth(self, access_token: str, *args, response: dict | None = None, **kwargs) -> Any:
        """Run the connect pipeline (never social-auth's login pipeline); returns the MetaConnection."""
        from meta_oauth.pipeline import CONNECT_PIPELINE

        out = self.run_pipeline(list(CONNECT_PIPELINE), 0, *args, backend=self, short_token=access_token,
                                exchange_response=response or {}, **kwargs)
        return out.get("connection") if isinstance(out, dict) else out

    # -- Graph calls made during the connect ------------------------------------------------------------
    def exchange_long_lived(self, short_token: str) -> dict[str, Any]:
        """grant_type=fb_exchange_token -> {access_token, token_type, expires_in}."""
        key, secret = self.get_key_and_secret()
        response = self.request_access_token(
            self.access_token_url(),
            method="POST",
            data={"grant_type": "fb_exchange_token", "client_id": key, "client_secret": secret,
                  "fb_exchange_token": short_token},
            headers=self.auth_headers(),
        )
        self.get_access_token(response)  # raises when Meta gave no token
        return response

    def debug_token(self, token: str) -> dict[str, Any]:
        """debug_token's ``data`` for ``token``, asked with the app token in the Authorization header."""
        key, secret = self.get_key_and_secret()
        body = self.get_json(
            f"{_graph_root()}/debug_token",
            method="POST",
            data={"input_token": token},
            headers={"Authorization": f"Bearer {key}|{secret}", "Accept": "application/json"},
            stage="token_exchange",
        )
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise AuthResponseError(self, code="malformed_response", stage="token_exchange")
        return data

    def user_data(self, access_token: str, *args, **kwargs) -> dict[str, Any]:
        """``me?fields=id,name`` with the token in the Authorization header (never in the URL)."""
        from crm_marketing.graph import GraphClient

        client = GraphClient(access_token)
        try:
            return client.get("me", {"fields": "id,name"})
        finally:
            client.close()


def callback_uri(request) -> str:
    """The redirect URI registered with Meta: META_OAUTH_REDIRECT_URI, or this host's callback."""
    configured = getattr(settings, "META_OAUTH_REDIRECT_URI", "")
    return configured or request.build_absolute_uri(reverse("meta_oauth:callback"))


def meta_backend(request) -> MetaOAuth2:
    """The backend bound to this request's session (``request`` is Django's HttpRequest)."""
    django_request = getattr(request, "_request", request)
    return MetaOAuth2(load_strategy(django_request), redirect_uri=callback_uri(django_request))
