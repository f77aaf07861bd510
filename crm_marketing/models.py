"""Core models: tenancy, the CRM (leads, opportunities, sales) and the audit trail."""
from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models, router, transaction
from django.db.models import F, Q
from django.db.models.functions import Upper
from django.dispatch import Signal
from django.utils import timezone

from crm_marketing.audit import SystemEvent
from crm_marketing.tenancy import Account, AccountOwned, Membership
from crm_marketing.event_models import EventDelivery, OutboxEvent
from crm_marketing.webhook_models import WebhookEvent, WebhookHandlerOutcome

__all__ = ["Account", "Membership", "SystemEvent", "Lead", "LeadTouch", "Opportunity", "Sale", "WebhookEvent",
           "WebhookHandlerOutcome", "OutboxEvent", "EventDelivery"]

E164 = r"^\+[1-9][0-9]{6,14}$"
# The lead's attribution copied onto its sales, so the ROI reads count distinct Meta customers per
# campaign from the sale table alone (no join to the leads). Lead.save and Sale.save keep it current.
SALE_ATTRIBUTION = ("lead_source", "meta_campaign_id")
# Sent by a service that inserts new rows with bulk_create (which sends no post_save), in its transaction,
# with ``sender`` the model and ``instances`` the saved rows: what a post_save receiver does per new row.
bulk_created = Signal()
CURRENCY = r"^[A-Z]{3}$"
validate_e164 = RegexValidator(E164, "Enter a phone number in E.164 format, e.g. +5491155550001.")
validate_currency = RegexValidator(CURRENCY, "Enter an ISO 4217 currency code, e.g. USD.")


# The choices live at module level so each model's Meta can build its check constraints from them
# (a nested class is out of reach from the nested Meta); the models alias them (Lead.Status, ...).
class LeadStatus(models.TextChoices):
    NEW = "new"
    CONTACTED = "contacted"
    QUALIFIED = "qualified"
    CONVERTED = "converted"
    LOST = "lost"


class LeadSource(models.TextChoices):
    ORGANIC = "organic", "Organic"
    META_LEAD_ADS = "meta_lead_ads", "Meta Lead Ads"
    META_CTWA = "meta_ctwa", "Meta CTWA"
    MANUAL = "manual", "Manual"
    IMPORT = "import", "Import"


class OpportunityStage(models.TextChoices):
    NEW = "new"
    QUALIFIED = "qualified"
    PROPOSAL = "proposal"
    NEGOTIATION = "negotiation"
    WON = "won"
    LOST = "lost"


CLOSED_STAGES = (OpportunityStage.WON, OpportunityStage.LOST)
CLOSED_STAGE_VALUES = [stage.value for stage in CLOSED_STAGES]
OPEN_STAGE_VALUES = [value for value in OpportunityStage.values if value not in CLOSED_STAGE_VALUES]


class SaleStatus(models.TextChoices):
    COMPLETED = "completed"
    REFUNDED = "refunded"


class Lead(AccountOwned):
    Status = LeadStatus
    Source = LeadSource

    META_SOURCES = (Source.META_LEAD_ADS, Source.META_CTWA)

    first_name = models.CharField(max_length=120)
    last_name = models.CharField(max_length=120, blank=True)
    phone = models.CharField(max_length=16, null=True, blank=True, validators=[validate_e164])
    email = models.EmailField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    lead_source = models.CharField(max_length=16, choices=Source.choices, default=Source.MANUAL)
    meta_campaign_id = models.CharField(verbose_name="Meta campaign ID", max_length=32, blank=True)
    meta_adset_id = models.CharField(verbose_name="Meta ad set ID", max_length=32, blank=True)
    meta_ad_id = models.CharField(verbose_name="Meta ad ID", max_length=32, blank=True)
    meta_form_id = models.CharField(verbose_name="Meta form ID", max_length=32, blank=True)
    meta_ad_headline = models.CharField(verbose_name="ad headline", max_length=255, blank=True)
    meta_ad_body = models.TextField(verbose_name="ad body", blank=True)
    ctwa_clid = models.CharField(verbose_name="CTWA click ID", max_length=255, blank=True)
    external_ids = models.JSONField(verbose_name="external IDs", default=dict, blank=True)
    seller = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    opted_out_at = models.DateTimeField(null=True, blank=True)
    last_inbound_at = models.DateTimeField(null=True, blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    status_changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "phone"], condition=Q(phone__isnull=False), name="lead_phone_unique_per_account"),
            models.CheckConstraint(condition=Q(phone__isnull=True) | Q(phone__regex=E164), name="lead_phone_e164"),
            models.CheckConstraint(condition=Q(status__in=LeadStatus.values), name="lead_status_valid"),
            models.CheckConstraint(condition=Q(lead_source__in=LeadSource.values), name="lead_source_valid"),
        ]
        indexes = [
            models.Index(fields=["account", "lead_source", "created_at"], name="lead_account_source_created"),
            models.Index(fields=["account", "created_at"], name="lead_account_created"),
            models.Index(fields=["account", "meta_campaign_id"], name="lead_account_campaign"),
            models.Index(fields=["account", "email"], name="lead_account_email"),
            # A Meta touch matches a lead by email case-insensitively (email__iexact: UPPER(email) = UPPER(%s)):
            # without it each new Lead Ads lead scanned every lead of its account (1 s at a million leads).
            models.Index(F("account"), Upper("email"), name="lead_account_email_upper"),
        ]

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    @property
    def is_meta_attributed(self) -> bool:
        return self.lead_source in self.META_SOURCES

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        """Save; an existing lead's attribution is re-copied onto its sales in the same transaction,
        before the row is written (so post_save receivers see the sales already attributed)."""
        update_fields = kwargs.get("update_fields")
        if self._state.adding or self.pk is None or (update_fields is not None and not set(SALE_ATTRIBUTION) & set(update_fields)):
            super().save(*args, **kwargs)
            return
        with transaction.atomic(using=kwargs.get("using") or router.db_for_write(Lead, instance=self)):
            copy_attribution_to_sales(self)
            super().save(*args, **kwargs)


class LeadTouch(AccountOwned):
    """One Meta touch of a lead (a form fill or an ad click to WhatsApp); the lead keeps the last."""

    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="touches")
    lead_source = models.CharField(max_length=16, choices=Lead.Source.choices)
    meta_campaign_id = models.CharField(verbose_name="Meta campaign ID", max_length=32, blank=True)
    meta_adset_id = models.CharField(verbose_name="Meta ad set ID", max_length=32, blank=True)
    meta_ad_id = models.CharField(verbose_name="Meta ad ID", max_length=32, blank=True)
    meta_form_id = models.CharField(verbose_name="Meta form ID", max_length=32, blank=True)
    external_id = models.CharField(verbose_name="external ID", max_length=255, blank=True, help_text="leadgen id or message id")
    details = models.JSONField(default=dict, blank=True)
    touched_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-touched_at", "-id"]
        verbose_name_plural = "lead touches"
        constraints = [
            models.UniqueConstraint(fields=["account", "lead_source", "external_id"], condition=~Q(external_id=""), name="leadtouch_external_unique"),
            models.CheckConstraint(condition=Q(lead_source__in=LeadSource.values), name="leadtouch_source_valid"),
        ]


class Opportunity(AccountOwned):
    Stage = OpportunityStage
    CLOSED_STAGES = CLOSED_STAGES

    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="opportunities")
    title = models.CharField(max_length=200, blank=True)
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.NEW)
    amount = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"), validators=[MinValueValidator(0)])
    currency = models.CharField(max_length=3, validators=[validate_currency])
    seller = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    stage_changed_at = models.DateTimeField(null=True, blank=True)
    stage_changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "opportunities"
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="opportunity_amount_not_negative"),
            models.CheckConstraint(condition=Q(currency__regex=CURRENCY), name="opportunity_currency_iso4217"),
            models.CheckConstraint(
                condition=Q(stage__in=CLOSED_STAGE_VALUES, closed_at__isnull=False) | Q(stage__in=OPEN_STAGE_VALUES, closed_at__isnull=True),
                name="opportunity_closed_iff_won_or_lost",
            ),
        ]
        indexes = [
            models.Index(fields=["account", "created_at"], name="opp_account_created"),
            models.Index(fields=["account", "closed_at"], name="opp_account_closed"),
        ]

    @property
    def is_closed(self) -> bool:
        return self.stage in self.CLOSED_STAGES

    def __str__(self) -> str:
        return self.title or f"Opportunity {self.pk}"


class Sale(AccountOwned):
    Status = SaleStatus

    opportunity = models.ForeignKey(Opportunity, null=True, blank=True, on_delete=models.PROTECT, related_name="sales")
    lead = models.ForeignKey(Lead, on_delete=models.PROTECT, related_name="sales")
    amount = models.DecimalField(max_digits=14, decimal_places=2, validators=[MinValueValidator(0)])
    currency = models.CharField(max_length=3, validators=[validate_currency])
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETED)
    closed_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(auto_now_add=True)
    # Copies of the lead's fields (SALE_ATTRIBUTION), never edited by hand.
    lead_source = models.CharField(max_length=16, choices=Lead.Source.choices, blank=True, editable=False)
    meta_campaign_id = models.CharField(verbose_name="Meta campaign ID", max_length=32, blank=True, editable=False)

    class Meta:
        ordering = ["-closed_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="sale_amount_not_negative"),
            models.CheckConstraint(condition=Q(currency__regex=CURRENCY), name="sale_currency_iso4217"),
            models.CheckConstraint(condition=Q(status__in=SaleStatus.values), name="sale_status_valid"),
            models.CheckConstraint(condition=Q(lead_source="") | Q(lead_source__in=LeadSource.values), name="sale_lead_source_valid"),
            models.UniqueConstraint(fields=["opportunity"], condition=Q(opportunity__isnull=False), name="sale_one_per_opportunity"),
        ]
        indexes = [
            models.Index(fields=["account", "closed_at"], name="sale_account_closed"),
            # Distinct Meta customers of a window, per campaign, from the index alone on PostgreSQL.
            models.Index(fields=["account", "status", "closed_at"], name="sale_account_status_closed",
                         include=["lead_source", "meta_campaign_id", "lead"]),
        ]

    def __str__(self) -> str:
        return f"{self.amount:,.2f} {self.currency}" if self.amount is not None else f"Sale {self.pk}"

    def save(self, *args, **kwargs) -> None:
        """Save with the lead's attribution copied from the database (the lead row is the truth)."""
        copied = Lead.objects.filter(pk=self.lead_id).values_list(*SALE_ATTRIBUTION).first() if self.lead_id else None
        if copied is not None:
            self.lead_source, self.meta_campaign_id = copied
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], *SALE_ATTRIBUTION}
        super().save(*args, **kwargs)


def copy_attribution_to_sales(lead: Lead) -> int:
    """Give the lead's sales its current attribution; returns how many sales changed."""
    values = {name: getattr(lead, name) for name in SALE_ATTRIBUTION}
    return Sale.objects.filter(lead_id=lead.pk).exclude(**values).update(**values)
