"""Output serializers of the stats and campaign endpoints, and their query parameters.

The one place figures are rounded: money is a JSON number with 2 decimals, percentages a number
with 1 decimal (both ROUND_HALF_UP), ``null`` when undefined. The stats code hands over Decimals.
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from marketing.stats import CAMPAIGN_ORDERING, CAMPAIGN_STATUSES, DEFAULT_CAMPAIGN_ORDERING

CENT = Decimal("0.01")
TENTH = Decimal("0.1")


HALF_UP = Context(rounding=ROUND_HALF_UP)
_quantize_half_up = HALF_UP.quantize  # the context's method: half the time of Decimal.quantize(..., context=)


def rounded(value, quantum: Decimal) -> float | None:
    """``value`` rounded half up to ``quantum``; a tiny negative rounds to 0.0, never to -0.0."""
    if value is None:
        return None
    return float(_quantize_half_up(value if isinstance(value, Decimal) else Decimal(value), quantum)) + 0.0


class _RoundedField(serializers.Field):
    """Read-only Decimal -> float rounded to ``quantum`` (DRF itself renders None as null)."""

    quantum = CENT

    def __init__(self, **kwargs):
        kwargs.setdefault("read_only", True)
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)

    def to_representation(self, value):
        return rounded(value, self.quantum)


@extend_schema_field(OpenApiTypes.DOUBLE)
class MoneyField(_RoundedField):
    quantum = CENT


@extend_schema_field(OpenApiTypes.DOUBLE)
class PercentField(_RoundedField):
    quantum = TENTH


class PeriodSerializer(serializers.Serializer):
    since = serializers.DateField()
    until = serializers.DateField()
    complete = serializers.BooleanField(help_text="False while the period includes today: its figures still grow")


class _CurrencyCheck(serializers.Serializer):
    currency = serializers.CharField()
    currency_mismatch = serializers.BooleanField()
    unconverted_currencies = serializers.ListField(child=serializers.CharField())


class MarketingStatsSerializer(_CurrencyCheck):
    leads = serializers.IntegerField()
    leads_change = PercentField()
    opportunities = serializers.IntegerField()
    opportunities_change = PercentField()
    sales_revenue = MoneyField()
    revenue_change = PercentField()
    marketing_spend = MoneyField()
    spend_change = PercentField()
    roi_percentage = PercentField()
    roi_change = PercentField()
    cpa = MoneyField()
    cost_per_lead = MoneyField()
    time_range = serializers.CharField()
    period = PeriodSerializer()
    previous_period = PeriodSerializer()
    meta_connected = serializers.BooleanField()
    last_synced_at = serializers.DateTimeField(allow_null=True)

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if "connect_url" in instance:
            data["connect_url"] = instance["connect_url"]
        return data


class CampaignStatSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    status = serializers.CharField()
    spend = MoneyField()
    impressions = serializers.IntegerField()
    clicks = serializers.IntegerField()
    leads = serializers.IntegerField()
    opportunities = serializers.IntegerField()
    revenue = MoneyField()
    roi = PercentField()
    cpa = MoneyField()
    currency = serializers.CharField()

    def to_representation(self, row: dict) -> dict:
        """The fields above, built in one go: /stats/roi serializes every campaign of the account
        (500 in bench/), where DRF's field-by-field pass alone cost ~25 ms."""
        return {
            "id": str(row["id"]), "name": str(row["name"]), "status": str(row["status"]),
            "spend": rounded(row["spend"], CENT), "impressions": int(row["impressions"]), "clicks": int(row["clicks"]),
            "leads": int(row["leads"]), "opportunities": int(row["opportunities"]), "revenue": rounded(row["revenue"], CENT),
            "roi": rounded(row["roi"], TENTH), "cpa": rounded(row["cpa"], CENT), "currency": str(row["currency"]),
        }


class CampaignPageSerializer(serializers.Serializer):
    """GET campaigns: a page of CampaignStats (EnvelopePagination's keys) and the currency check.
    The view builds the dict; this serializer is its schema."""

    results = CampaignStatSerializer(many=True)
    total = serializers.IntegerField(min_value=0)
    limit = serializers.IntegerField(min_value=1)
    offset = serializers.IntegerField(min_value=0)
    currency_mismatch = serializers.BooleanField()
    unconverted_currencies = serializers.ListField(child=serializers.CharField())


class RoiReportSerializer(_CurrencyCheck):
    campaigns = CampaignStatSerializer(many=True)
    time_period = serializers.CharField()
    period = PeriodSerializer()
    total_spend = MoneyField()
    total_revenue = MoneyField()
    average_roi = PercentField()


class TimeseriesPointSerializer(serializers.Serializer):
    date = serializers.DateField()
    spend = MoneyField()
    leads = serializers.IntegerField()
    opportunities = serializers.IntegerField()
    revenue = MoneyField()


class _DayFigures(serializers.Serializer):
    spend = MoneyField()
    impressions = serializers.IntegerField()
    clicks = serializers.IntegerField()
    leads = serializers.IntegerField()
    opportunities = serializers.IntegerField()
    revenue = MoneyField()
    cpa = MoneyField()
    cpc = MoneyField()
    cpm = MoneyField()
    ctr = PercentField()


class PerformanceSerializer(_DayFigures):
    roi_percentage = PercentField()


class InsightDaySerializer(_DayFigures):
    date = serializers.DateField()

    def to_representation(self, row: dict) -> dict:
        """The fields above, built in one go: a lifetime answers a row per day (730 and more), where DRF's
        field-by-field pass cost more than reading the figures."""
        return {
            "spend": rounded(row["spend"], CENT), "impressions": int(row["impressions"]), "clicks": int(row["clicks"]),
            "leads": int(row["leads"]), "opportunities": int(row["opportunities"]), "revenue": rounded(row["revenue"], CENT),
            "cpa": rounded(row["cpa"], CENT), "cpc": rounded(row["cpc"], CENT), "cpm": rounded(row["cpm"], CENT),
            "ctr": rounded(row["ctr"], TENTH), "date": row["date"].isoformat(),
        }


class CampaignDetailSerializer(_CurrencyCheck):
    id = serializers.CharField()
    name = serializers.CharField()
    objective = serializers.CharField()
    status = serializers.CharField()
    daily_budget = MoneyField()
    lifetime_budget = MoneyField()
    budget_currency = serializers.CharField()
    start_time = serializers.DateTimeField(allow_null=True)
    end_time = serializers.DateTimeField(allow_null=True)
    performance = PerformanceSerializer()
    time_range = serializers.CharField()
    period = PeriodSerializer()


class CampaignInsightsSerializer(_CurrencyCheck):
    id = serializers.CharField()
    name = serializers.CharField()
    insights = InsightDaySerializer(many=True)
    time_range = serializers.CharField()
    period = PeriodSerializer()
    attribution_window = serializers.CharField()


class TimeseriesParams(serializers.Serializer):
    campaign_id = serializers.CharField(required=False, max_length=32)


class CampaignListParams(serializers.Serializer):
    """status and ordering of GET campaigns (limit/offset are EnvelopePagination's)."""

    status = serializers.ChoiceField(choices=CAMPAIGN_STATUSES, required=False)
    ordering = serializers.CharField(required=False)

    def validate_ordering(self, value: str) -> tuple[str, ...]:
        terms = tuple(t.strip() for t in value.split(",") if t.strip())
        if not terms or any(t.lstrip("-") not in CAMPAIGN_ORDERING for t in terms):
            raise serializers.ValidationError(f"Allowed: {', '.join(CAMPAIGN_ORDERING)} (prefix - for descending).")
        return terms

    @property
    def order_terms(self) -> tuple[str, ...]:
        return self.validated_data.get("ordering") or DEFAULT_CAMPAIGN_ORDERING


# The connection endpoints under /crm/marketing (token-status, portfolios, ad accounts). No token field, by design.
class SelectedAdAccountSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    currency = serializers.CharField()


class TokenStatusSerializer(serializers.Serializer):
    connected = serializers.BooleanField()
    needs_reconnect = serializers.BooleanField()
    expires_at = serializers.DateTimeField(allow_null=True)
    days_left = serializers.IntegerField(allow_null=True)
    scopes = serializers.ListField(child=serializers.CharField())
    business_managers = serializers.IntegerField(allow_null=True)
    ad_accounts = serializers.IntegerField(allow_null=True)
    ad_account = SelectedAdAccountSerializer(allow_null=True)

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if instance.connect_url:
            data["connect_url"] = instance.connect_url
        return data


class PortfolioSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    ad_accounts_count = serializers.IntegerField()


class MetaAdAccountSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    currency = serializers.CharField()
    timezone = serializers.CharField()
    status = serializers.CharField()
