"""The connect pipeline: what happens after Meta hands us a short-lived user token.

social-auth runs these steps in order (``MetaOAuth2.do_auth``), merging each returned dict into
the keyword arguments of the next. None of them touches Django users or sessions: the result is
a MetaConnection for the account the OAuth state was issued for.
"""
from __future__ import annotations

from typing import Any

from social_core.exceptions import AuthResponseError

from crm_marketing.meta_time import parse_meta_time
from meta_oauth.services import TokenDetails, save_connection

CONNECT_PIPELINE = (
    "meta_oauth.pipeline.long_lived_token",
    "meta_oauth.pipeline.token_details",
    "meta_oauth.pipeline.meta_user",
    "meta_oauth.pipeline.store_connection",
)


def long_lived_token(backend, short_token: str, **kwargs) -> dict[str, Any]:
    """Swap the ~2 h token for the ~60 day one (grant_type=fb_exchange_token)."""
    response = backend.exchange_long_lived(short_token)
    return {"access_token": response["access_token"]}


def token_details(backend, access_token: str, **kwargs) -> dict[str, Any]:
    """debug_token: the token must be valid and issued to *our* app; keep expiry and scopes."""
    data = backend.debug_token(access_token)
    app_id, _secret = backend.get_key_and_secret()
    if not data.get("is_valid") or str(data.get("app_id", "")) != str(app_id):
        raise AuthResponseError(backend, "Meta says the token is not valid for this app.", code="invalid_claim",
                                claim="app_id", stage="token_exchange")
    scopes = data.get("scopes")
    return {"token_details": TokenDetails(
        expires_at=parse_meta_time(data.get("expires_at")),
        data_access_expires_at=parse_meta_time(data.get("data_access_expires_at")),
        scopes=[str(s) for s in scopes] if isinstance(scopes, list) else [],
        meta_user_id=str(data.get("user_id") or ""),
    )}


def meta_user(backend, access_token: str, token_details: TokenDetails, **kwargs) -> dict[str, Any]:
    """me?fields=id,name; the id must be the user debug_token named."""
    me = backend.user_data(access_token)
    meta_user_id = str(me.get("id") or "")
    if not meta_user_id or (token_details.meta_user_id and meta_user_id != token_details.meta_user_id):
        raise AuthResponseError(backend, "Meta returned another user for the token.", code="invalid_claim",
                                claim="user_id", stage="user_info")
    return {"meta_user": {"id": meta_user_id, "name": str(me.get("name") or "")}}


def store_connection(account, user, access_token: str, token_details: TokenDetails, meta_user: dict,
                     http_request=None, **kwargs) -> dict[str, Any]:
    connection = save_connection(account, token=access_token, details=token_details, meta_user_id=meta_user["id"],
                                 meta_user_name=meta_user["name"], actor=user, request=http_request)
    return {"connection": connection}
