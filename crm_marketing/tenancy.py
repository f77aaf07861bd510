"""Tenancy: the Account (one sales business), who belongs to it, and the one way to scope rows.

Every tenant-owned model inherits ``AccountOwned``; every API view inherits the scoped bases in
``crm_marketing.api`` which resolve ``request.account`` with ``resolve_account`` below.
"""
from __future__ import annotations

import zoneinfo
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, models
from rest_framework.exceptions import NotAuthenticated, PermissionDenied

from crm_marketing.errors import DomainError


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not an IANA time zone.")


class Account(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=60, unique=True)
    currency = models.CharField(max_length=3, default="USD", help_text="ISO 4217 code")
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(currency__regex=r"^[A-Z]{3}$"), name="account_currency_iso4217"),
        ]

    def __str__(self) -> str:
        return self.name


class MembershipRole(models.TextChoices):
    CEO = "ceo", "CEO"
    ADMIN = "admin", "Admin"
    MARKETING = "marketing", "Marketing"
    SELLER = "seller", "Seller"


class Membership(models.Model):
    Role = MembershipRole

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "account"], name="membership_user_account_unique"),
            models.CheckConstraint(condition=models.Q(role__in=MembershipRole.values), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.account} ({self.role})"


ALL_ROLES = frozenset(Membership.Role.values)
MARKETING_ROLES = frozenset({"ceo", "admin", "marketing"})
MANAGER_ROLES = frozenset({"ceo", "admin"})


class AccountQuerySet(models.QuerySet):
    def for_account(self, account: Account) -> "AccountQuerySet":
        return self.filter(account=account)


class AccountOwned(models.Model):
    """Abstract base of every tenant-owned row."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")

    objects = AccountQuerySet.as_manager()

    class Meta:
        abstract = True

    def clean_fields(self, exclude=None) -> None:
        """Django's field checks plus ours (crm_marketing.validation): dates in the API's range and
        storable JSON, for every tenant row a ModelForm (the admin) validates."""
        from crm_marketing.validation import clean_model_fields

        errors = {}
        try:
            super().clean_fields(exclude=exclude)
        except ValidationError as error:
            errors = error.update_error_dict(errors)
        for name, problems in clean_model_fields(self, set(exclude or ()) | set(errors)).items():
            errors.setdefault(name, []).extend(problems)
        if errors:
            raise ValidationError(errors)


class AccountRequired(DomainError):
    status_code = 400
    code = "account_required"


def choose_membership(memberships: list[Membership], asked: str | None) -> Membership | None:
    """The membership ``asked`` (an account slug, from ``X-Account``) names, else the only one.

    None when the user has several and asked for none (or has none). Naming an account the user
    is not in is a 403, never a silent fallback to another one.
    """
    if asked:
        membership = next((m for m in memberships if m.account.slug == asked), None)
        if membership is None:
            raise PermissionDenied("You are not a member of that account.")
        return membership
    return memberships[0] if len(memberships) == 1 else None


def memberships_of(user) -> list[Membership]:
    """The user's memberships with their accounts, by account name. Every API call reads them, so the query
    is written out once instead of compiled each time (``select_related("account")`` cost ~1 ms per call)."""
    memberships = []
    for account in Account.objects.raw(_memberships_sql(), [user.pk]):
        membership = Membership.from_db(account._state.db, ["id", "user_id", "account_id", "role"],
                                        [account.membership_id, user.pk, account.pk, account.membership_role])
        membership.account = account
        memberships.append(membership)
    return memberships


@lru_cache(maxsize=None)
def _memberships_sql() -> str:
    q = connection.ops.quote_name
    m, a = Membership._meta, Account._meta

    def col(meta, name: str) -> str:
        return q(meta.get_field(name).column)

    return (f"SELECT a.*, m.{col(m, 'id')} AS membership_id, m.{col(m, 'role')} AS membership_role "
            f"FROM {q(m.db_table)} m JOIN {q(a.db_table)} a ON a.{col(a, 'id')} = m.{col(m, 'account')} "
            f"WHERE m.{col(m, 'user')} = %s ORDER BY a.{col(a, 'name')}, a.{col(a, 'id')}")


def resolve_account(request, allowed_roles: frozenset[str]) -> tuple[Account, Membership]:
    """The account a request acts for, from the user's memberships only.

    ``X-Account`` (slug) picks one when the user has several; nothing in the body, the query or
    the session can choose it (the API is the one place where the account is selected, so every
    client does it the same way). 401 anonymous, 403 not a member or wrong role.
    """
    user = request.user
    if not user or not user.is_authenticated:
        raise NotAuthenticated()
    memberships = memberships_of(user)
    membership = choose_membership(memberships, request.META.get("HTTP_X_ACCOUNT"))
    if membership is None:
        if not memberships:
            raise PermissionDenied("You are not a member of any account.")
        raise AccountRequired("You belong to several accounts: choose one with the X-Account header.")
    if membership.role not in allowed_roles:
        raise PermissionDenied(f"The {membership.role} role cannot use this endpoint.")
    return membership.account, membership
