"""The account's Meta connection: one long-lived user token, encrypted, with its expiry and scopes."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from crm_marketing.crypto import decrypt_token, encrypt_token
from crm_marketing.tenancy import AccountOwned


class MetaConnectionStatus(models.TextChoices):
    CONNECTED = "connected"
    NEEDS_RECONNECT = "needs_reconnect"
    DISCONNECTED = "disconnected"


class MetaConnection(AccountOwned):
    Status = MetaConnectionStatus

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CONNECTED)
    meta_user_id = models.CharField(verbose_name="Meta user ID", max_length=32, blank=True)
    meta_user_name = models.CharField(max_length=200, blank=True)
    # Fernet ciphertext (crm_marketing.crypto); never serialized, never shown in admin.
    token_ciphertext = models.TextField(blank=True, editable=False)
    token_expires_at = models.DateTimeField(null=True, blank=True)
    data_access_expires_at = models.DateTimeField(null=True, blank=True)
    scopes = models.JSONField(default=list, blank=True)
    connected_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    connected_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=255, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account"], name="metaconnection_one_per_account"),
            models.CheckConstraint(condition=Q(status__in=MetaConnectionStatus.values), name="metaconnection_status_valid"),
            models.CheckConstraint(
                condition=Q(status="disconnected", token_ciphertext="") | (~Q(status="disconnected") & ~Q(token_ciphertext="")),
                name="metaconnection_token_iff_not_disconnected",
            ),
        ]

    def __str__(self) -> str:
        return f"Meta connection of {self.account} ({self.status})"

    def set_token(self, token: str) -> None:
        self.token_ciphertext = encrypt_token(token)

    def get_token(self) -> str:
        return decrypt_token(self.token_ciphertext)

    @property
    def is_usable(self) -> bool:
        return self.status == self.Status.CONNECTED and bool(self.token_ciphertext)


class OAuthState(AccountOwned):
    """One issued OAuth ``state``: who asked, for which account, from which browser session.

    Only hashes are kept (the state and the session key are bearer secrets). A row is good once,
    for STATE_LIFETIME seconds, for the same user in the same session; the callback checks it
    before any call to Meta.
    """

    STATE_LIFETIME_SECONDS = 600

    state_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    session_key_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "OAuth state"
        indexes = [models.Index(fields=["account", "created_at"], name="oauthstate_account_created")]

    def __str__(self) -> str:
        return f"OAuth state for {self.account} by user {self.user_id} ({'used' if self.used_at else 'open'})"


class WhatsAppChannel(AccountOwned):
    """A WhatsApp Business phone number (of a WABA) that the account sends from and receives on.

    ``meta_phone_number_id`` is unique across accounts: a status or inbound-message webhook names
    the phone number id and finds its account by this row, never by trying tokens.
    """

    meta_waba_id = models.CharField(verbose_name="WABA ID", max_length=32, help_text="WhatsApp Business Account id")
    meta_phone_number_id = models.CharField(verbose_name="phone number ID", max_length=32, unique=True)
    display_phone_number = models.CharField(max_length=32, blank=True)
    verified_name = models.CharField(max_length=200, blank=True)
    quality_rating = models.CharField(max_length=16, blank=True, help_text="GREEN, YELLOW, RED or UNKNOWN, as Meta sends it")
    messaging_limit_tier = models.CharField(max_length=32, blank=True, help_text="TIER_250, TIER_1K, ..., TIER_UNLIMITED")
    throughput_mps = models.PositiveIntegerField(verbose_name="throughput (messages per second)", default=80, help_text="Messages per second Meta allows this number")
    is_selected = models.BooleanField(default=True, help_text="The number automation sends from")
    subscribed_at = models.DateTimeField(null=True, blank=True, help_text="When the app was subscribed to the WABA's webhooks")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "WhatsApp channel"
        constraints = [
            models.UniqueConstraint(fields=["account"], condition=Q(is_selected=True), name="whatsappchannel_one_selected_per_account"),
            models.CheckConstraint(condition=Q(throughput_mps__gte=1), name="whatsappchannel_throughput_positive"),
        ]
        indexes = [models.Index(fields=["account", "meta_waba_id"], name="whatsappchannel_account_waba")]

    def __str__(self) -> str:
        return f"{self.verified_name or self.display_phone_number} ({self.meta_phone_number_id})"


class MetaPage(AccountOwned):
    """A Facebook Page whose Lead Ads forms feed the account; ``meta_page_id`` routes leadgen webhooks."""

    meta_page_id = models.CharField(verbose_name="page ID", max_length=32, unique=True)
    name = models.CharField(max_length=200, blank=True)
    # Fernet ciphertext of the page access token (crm_marketing.crypto); never serialized or shown.
    page_token_ciphertext = models.TextField(blank=True, editable=False)
    subscribed_at = models.DateTimeField(null=True, blank=True, help_text="When leadgen was subscribed for this page")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "Meta page"

    def __str__(self) -> str:
        return f"{self.name or 'Page'} ({self.meta_page_id})"

    @property
    def is_subscribed(self) -> bool:
        return self.subscribed_at is not None

    def set_page_token(self, token: str) -> None:
        self.page_token_ciphertext = encrypt_token(token) if token else ""

    def get_page_token(self) -> str:
        return decrypt_token(self.page_token_ciphertext) if self.page_token_ciphertext else ""
