"""Serializers of the CRM API (leads, opportunities, sales) and their list filters."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework import serializers

from crm_marketing.api import MAX_DB_INTEGER, AccountScopedRelatedField, QueryFilter, StrictSerializerMixin
from crm_marketing.models import Lead, Membership, Opportunity, Sale
from crm_marketing.validation import validate_json_object, validate_moment


class MemberField(serializers.PrimaryKeyRelatedField):
    """A user chosen by id among request.account's members (sellers, closers); a seller may only
    name himself, so he cannot hand a lead to someone else or assign one he will not see."""

    def get_queryset(self):
        request = self.context["request"]
        users = get_user_model().objects.filter(memberships__account=request.account)
        if request.membership.role == Membership.Role.SELLER:
            users = users.filter(pk=request.user.pk)
        return users


class VisibleLeadField(AccountScopedRelatedField):
    """A lead of request.account that the caller can see: a seller only his own, so another
    seller's lead is "does not exist" exactly like another account's."""

    def __init__(self, **kwargs):
        super().__init__(Lead, **kwargs)

    def get_queryset(self):
        return seller_scope(super().get_queryset(), self.context["request"].membership, lead_path="")


class VisibleOpportunityField(AccountScopedRelatedField):
    """An opportunity of request.account on a lead the caller can see."""

    def __init__(self, **kwargs):
        super().__init__(Opportunity, **kwargs)

    def get_queryset(self):
        return seller_scope(super().get_queryset(), self.context["request"].membership)


def _id_filter() -> serializers.IntegerField:
    """An id in a query string: out of the database's integer range is a 400, not an overflow."""
    return serializers.IntegerField(required=False, min_value=1, max_value=MAX_DB_INTEGER)


class LeadSerializer(StrictSerializerMixin, serializers.ModelSerializer):
    name = serializers.CharField(read_only=True)
    seller = MemberField(required=False, allow_null=True)

    class Meta:
        model = Lead
        fields = [
            "id", "first_name", "last_name", "name", "phone", "email", "status", "lead_source",
            "meta_campaign_id", "meta_adset_id", "meta_ad_id", "meta_form_id", "meta_ad_headline", "meta_ad_body",
            "ctwa_clid", "external_ids", "seller", "opted_out_at", "last_inbound_at",
            "status_changed_at", "status_changed_by", "created_at", "updated_at",
        ]
        read_only_fields = ["opted_out_at", "last_inbound_at", "status_changed_at", "status_changed_by", "created_at", "updated_at"]
        # The unique phone is checked in validate_phone within the account; the DB constraint backs it.
        validators = []

    def validate_phone(self, value):
        if not value:
            return None
        request = self.context["request"]
        # Among the leads the caller can see: a seller is not told here about a colleague's lead
        # (the service answers that case without naming it, crm_marketing.services.duplicate_phone).
        duplicates = seller_scope(Lead.objects.filter(account=request.account, phone=value), request.membership, lead_path="")
        if self.instance is not None:
            duplicates = duplicates.exclude(pk=self.instance.pk)
        if duplicates.exists():
            raise serializers.ValidationError("A lead with this phone already exists in this account.")
        return value

    def validate_external_ids(self, value):
        validate_json_object(value)  # Django's ValidationError: DRF reports it on the field
        return value

    def validate(self, attrs):
        if self.instance is None and not (attrs.get("phone") or attrs.get("email")):
            raise serializers.ValidationError({"phone": ["A lead needs a phone or an email."]})
        return attrs


class LeadFilter(QueryFilter):
    status = serializers.ChoiceField(choices=Lead.Status.choices, required=False)
    lead_source = serializers.ChoiceField(choices=Lead.Source.choices, required=False)
    seller = _id_filter()
    meta_campaign_id = serializers.CharField(required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
    phone = serializers.CharField(required=False)
    email = serializers.CharField(required=False)

    LOOKUPS = {"created_after": "created_at__gte", "created_before": "created_at__lt", "seller": "seller_id", "email": "email__iexact"}


class OpportunitySerializer(StrictSerializerMixin, serializers.ModelSerializer):
    lead = VisibleLeadField()
    seller = MemberField(required=False, allow_null=True)
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=0, required=False, coerce_to_string=False)

    class Meta:
        model = Opportunity
        fields = ["id", "lead", "title", "stage", "amount", "currency", "seller", "stage_changed_at", "stage_changed_by", "created_at", "closed_at", "updated_at"]
        read_only_fields = ["stage_changed_at", "stage_changed_by", "created_at", "closed_at", "updated_at"]

    def validate_lead(self, value):
        if self.instance is not None and value.pk != self.instance.lead_id:
            raise serializers.ValidationError("An opportunity cannot move to another lead.")
        return value


class OpportunityFilter(QueryFilter):
    stage = serializers.ChoiceField(choices=Opportunity.Stage.choices, required=False)
    lead = _id_filter()
    seller = _id_filter()
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)

    LOOKUPS = {"created_after": "created_at__gte", "created_before": "created_at__lt", "seller": "seller_id", "lead": "lead_id"}


class SaleSerializer(StrictSerializerMixin, serializers.ModelSerializer):
    lead = VisibleLeadField()
    opportunity = VisibleOpportunityField(required=False, allow_null=True)
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=0, coerce_to_string=False)

    class Meta:
        model = Sale
        fields = ["id", "lead", "opportunity", "amount", "currency", "status", "closed_at", "created_at"]
        read_only_fields = ["created_at"]
        validators = []

    def validate_closed_at(self, value):
        validate_moment(value)  # far-off years are typos that would push the ROI windows past what dates hold
        return value

    def validate(self, attrs):
        if self.instance is not None and ({"lead", "opportunity", "amount", "currency"} & set(attrs)):
            raise serializers.ValidationError({name: ["Cannot change after the sale is recorded; refund it instead."] for name in {"lead", "opportunity", "amount", "currency"} & set(attrs)})
        return attrs


class SaleFilter(QueryFilter):
    status = serializers.ChoiceField(choices=Sale.Status.choices, required=False)
    lead = _id_filter()
    closed_after = serializers.DateTimeField(required=False)
    closed_before = serializers.DateTimeField(required=False)

    LOOKUPS = {"closed_after": "closed_at__gte", "closed_before": "closed_at__lt", "lead": "lead_id"}


def seller_scope(queryset, membership: Membership, *, lead_path: str = "lead__"):
    """Sellers see only the rows of leads assigned to them."""
    if membership.role == Membership.Role.SELLER:
        return queryset.filter(**{f"{lead_path}seller": membership.user})
    return queryset


class MembershipSummarySerializer(serializers.Serializer):
    """One account the user belongs to, with what a client needs to format its figures."""

    account_id = serializers.IntegerField(source="account.id")
    name = serializers.CharField(source="account.name")
    slug = serializers.CharField(source="account.slug")
    role = serializers.ChoiceField(choices=Membership.Role.choices)
    currency = serializers.CharField(source="account.currency")
    timezone = serializers.CharField(source="account.timezone")


class CurrentUserSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    name = serializers.SerializerMethodField()
    email = serializers.EmailField()
    is_staff = serializers.BooleanField()

    def get_name(self, user) -> str:
        return user.get_full_name() or user.username


class MeSerializer(serializers.Serializer):
    """GET /crm/me: the caller, their memberships, the account X-Account chose (null when they
    belong to several and named none) and the language the hub should speak."""

    user = CurrentUserSerializer()
    memberships = MembershipSummarySerializer(many=True)
    account = MembershipSummarySerializer(allow_null=True)
    language = serializers.ChoiceField(choices=[("es", "Español"), ("en", "English")])
