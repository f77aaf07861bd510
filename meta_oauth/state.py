"""OAuth ``state`` for the Meta dialog: unguessable, bound to user + account + browser session,
single use, valid for OAuthState.STATE_LIFETIME_SECONDS. Checked before any call to Meta."""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from crm_marketing.tenancy import MANAGER_ROLES, Account, Membership
from meta_oauth.backends import meta_backend
from meta_oauth.models import OAuthState

MAX_STATE_LENGTH = 128
KEEP_OLD_STATES = timedelta(days=1)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _session_key(request) -> str:
    """The browser session's key, creating the session if it has none yet."""
    session = request.session
    if not session.session_key:
        session.save()
    return session.session_key


@dataclass(frozen=True)
class IssuedState:
    auth_url: str
    state: str
    expires_in: int


def issue_state(request, account: Account) -> IssuedState:
    """Build the Meta dialog URL (social-auth stores its half of the state in the session) and
    record our server-side half: who, which account, which session."""
    backend = meta_backend(request)
    auth_url = backend.auth_url()
    state = backend.issued_state
    now = timezone.now()
    with transaction.atomic():
        OAuthState.objects.filter(created_at__lt=now - KEEP_OLD_STATES).delete()
        OAuthState.objects.create(account=account, user=request.user, state_hash=_digest(state),
                                  session_key_hash=_digest(_session_key(request)), created_at=now)
    return IssuedState(auth_url=auth_url, state=state, expires_in=OAuthState.STATE_LIFETIME_SECONDS)


def consume_state(request, raw_state: str | None) -> OAuthState | None:
    """The state's row, marked used, when this session's logged-in user issued it less than the
    lifetime ago, has not used it, and still manages the account; otherwise None (and nothing is
    marked: a stranger replaying someone's state does not burn it)."""
    user = getattr(request, "user", None)
    if not raw_state or len(raw_state) > MAX_STATE_LENGTH or user is None or not user.is_authenticated:
        return None
    session_key = request.session.session_key
    if not session_key:
        return None
    now = timezone.now()
    fresh_since = now - timedelta(seconds=OAuthState.STATE_LIFETIME_SECONDS)
    row = (OAuthState.objects.select_related("account")
           .filter(state_hash=_digest(raw_state), used_at__isnull=True, created_at__gt=fresh_since).first())
    if row is None or row.user_id != user.pk or not hmac.compare_digest(row.session_key_hash, _digest(session_key)):
        return None
    if not Membership.objects.filter(user=user, account=row.account, role__in=MANAGER_ROLES).exists():
        return None
    claimed = OAuthState.objects.filter(pk=row.pk, used_at__isnull=True).update(used_at=now)
    return row if claimed == 1 else None
