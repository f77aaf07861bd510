"""Meta Ads data mirrored per account: ad accounts, campaigns, ad sets, ads, daily insights."""
from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from crm_marketing.models import Account, validate_currency
from crm_marketing.tenancy import AccountOwned


class AdAccount(AccountOwned):
    """A Meta ad account the account connected (``meta_ad_account_id`` is "act_…")."""

    meta_ad_account_id = models.CharField(verbose_name="Meta ad account ID", max_length=40)
    meta_business_id = models.CharField(verbose_name="Meta business ID", max_length=32, blank=True)
    name = models.CharField(max_length=200)
    currency = models.CharField(max_length=3, validators=[validate_currency])
    timezone_name = models.CharField(verbose_name="timezone", max_length=64, default="UTC")
    account_status = models.PositiveSmallIntegerField(default=1)
    is_selected = models.BooleanField(default=True, help_text="The ad account the hub reports on")
    parked_until = models.DateTimeField(null=True, blank=True, help_text="Throttled by Meta until then")
    backfilled_since = models.DateField(null=True, blank=True, help_text="Insights are complete from this day on")
    last_synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "meta_ad_account_id"], name="adaccount_unique_per_account"),
            models.UniqueConstraint(fields=["account"], condition=Q(is_selected=True), name="adaccount_one_selected_per_account"),
            # The target of DailyInsight's (account, ad_account) foreign key (migration 0011).
            models.UniqueConstraint(fields=["account", "id"], name="adaccount_account_id"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.meta_ad_account_id})"


class _MetaObject(AccountOwned):
    name = models.CharField(max_length=400)
    status = models.CharField(max_length=32, blank=True)
    effective_status = models.CharField(max_length=32, blank=True)
    created_time = models.DateTimeField(null=True, blank=True)
    updated_time = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.name


class Campaign(_MetaObject):
    ad_account = models.ForeignKey(AdAccount, on_delete=models.CASCADE, related_name="campaigns")
    meta_campaign_id = models.CharField(verbose_name="Meta campaign ID", max_length=32)
    objective = models.CharField(max_length=64, blank=True)
    daily_budget = models.BigIntegerField(null=True, blank=True, help_text="minor units (cents)")
    lifetime_budget = models.BigIntegerField(null=True, blank=True, help_text="minor units (cents)")
    start_time = models.DateTimeField(null=True, blank=True)
    stop_time = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "meta_campaign_id"], name="campaign_unique_per_account")]
        indexes = [models.Index(fields=["account", "status"], name="campaign_account_status")]


class AdSet(_MetaObject):
    ad_account = models.ForeignKey(AdAccount, on_delete=models.CASCADE, related_name="adsets")
    campaign = models.ForeignKey(Campaign, null=True, blank=True, on_delete=models.SET_NULL, related_name="adsets")
    meta_adset_id = models.CharField(verbose_name="Meta ad set ID", max_length=32)
    meta_campaign_id = models.CharField(verbose_name="Meta campaign ID", max_length=32, blank=True)
    daily_budget = models.BigIntegerField(null=True, blank=True)
    lifetime_budget = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "meta_adset_id"], name="adset_unique_per_account")]


class Ad(_MetaObject):
    ad_account = models.ForeignKey(AdAccount, on_delete=models.CASCADE, related_name="ads")
    campaign = models.ForeignKey(Campaign, null=True, blank=True, on_delete=models.SET_NULL, related_name="ads")
    adset = models.ForeignKey(AdSet, null=True, blank=True, on_delete=models.SET_NULL, related_name="ads")
    meta_ad_id = models.CharField(verbose_name="Meta ad ID", max_length=32)
    meta_adset_id = models.CharField(verbose_name="Meta ad set ID", max_length=32, blank=True)
    meta_campaign_id = models.CharField(verbose_name="Meta campaign ID", max_length=32, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "meta_ad_id"], name="ad_unique_per_account")]


class DailyInsight(AccountOwned):
    """One ad's figures for one day (ad account timezone). Meta ids are kept as strings so that
    the ROI reads aggregate one table without joins, and a restated day overwrites its row.

    Written in bulk (marketing.services.insight_store) and restated daily for 28 days, so the table is
    kept cheap to write: one foreign key, ``(account, ad_account) -> AdAccount(account, id)``, checks
    both references and that they agree (migration 0011, PostgreSQL; one check per inserted row instead
    of two); two indexes besides the unique key (the rollup writers read by account and day; the single
    column ones Django would add for the references are left out); and pages are half filled
    (fillfactor 50) so a restated row is rewritten in place (a HOT update: no index touched)."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False)
    ad_account = models.ForeignKey(AdAccount, on_delete=models.CASCADE, related_name="insights", db_index=False,
                                   db_constraint=False)
    meta_campaign_id = models.CharField(verbose_name="Meta campaign ID", max_length=32)
    meta_adset_id = models.CharField(verbose_name="Meta ad set ID", max_length=32)
    meta_ad_id = models.CharField(verbose_name="Meta ad ID", max_length=32)
    date = models.DateField()
    currency = models.CharField(max_length=3, validators=[validate_currency])
    spend = models.DecimalField(max_digits=14, decimal_places=2)
    impressions = models.BigIntegerField(default=0)
    clicks = models.BigIntegerField(default=0)
    link_clicks = models.BigIntegerField(default=0)
    reach = models.BigIntegerField(default=0)
    leads = models.IntegerField(default=0, help_text="Meta-reported lead actions (META_LEAD_ACTION_TYPES)")
    synced_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["ad_account", "meta_ad_id", "date"], name="insight_unique_ad_day"),
            models.CheckConstraint(condition=Q(spend__gte=0), name="insight_spend_not_negative"),
        ]
        indexes = [models.Index(fields=["account", "date"], name="insight_account_date")]


class SyncRunKind(models.TextChoices):
    ENTITIES = "entities"
    INSIGHTS = "insights"
    FULL = "full"
    LEADS_BACKFILL = "leads_backfill"


class SyncRunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PARKED = "parked"


ACTIVE_SYNC_STATUSES = [SyncRunStatus.QUEUED.value, SyncRunStatus.RUNNING.value]


class SyncRun(AccountOwned):
    Kind = SyncRunKind
    Status = SyncRunStatus

    ad_account = models.ForeignKey(AdAccount, on_delete=models.CASCADE, related_name="sync_runs")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    since = models.DateField(null=True, blank=True)
    until = models.DateField(null=True, blank=True)
    rows = models.IntegerField(default=0)
    graph_calls = models.IntegerField(default=0)
    error = models.TextField(blank=True)
    task_id = models.CharField(verbose_name="task ID", max_length=64, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The running worker's lease: it writes heartbeat_at as the sync progresses (every Graph response, page,
    # poll and slice). A running run whose heartbeat is older than META_SYNC_LEASE_SECONDS lost its worker
    # (killed): the next request or the re-delivered task takes over. lease_owner fences the old worker out.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=32, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["ad_account", "-created_at"], name="syncrun_adaccount_created")]
        constraints = [
            # At most one queued or running sync per ad account: a second request is a 409.
            models.UniqueConstraint(fields=["ad_account"], condition=Q(status__in=ACTIVE_SYNC_STATUSES), name="syncrun_one_active_per_ad_account"),
            models.CheckConstraint(condition=Q(kind__in=SyncRunKind.values), name="syncrun_kind_valid"),
            models.CheckConstraint(condition=Q(status__in=SyncRunStatus.values), name="syncrun_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} sync of {self.ad_account_id}: {self.status}"


class ExchangeRate(AccountOwned):
    """How many units of ``to_currency`` one unit of ``from_currency`` buys, for the ROI sums."""

    from_currency = models.CharField(max_length=3, validators=[validate_currency])
    to_currency = models.CharField(max_length=3, validators=[validate_currency])
    rate = models.DecimalField(max_digits=18, decimal_places=8)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "from_currency", "to_currency"], name="exchangerate_unique_pair"),
            models.CheckConstraint(condition=Q(rate__gt=0), name="exchangerate_positive"),
        ]

    def __str__(self) -> str:
        return f"1 {self.from_currency} = {self.rate} {self.to_currency}"


class RollupFigures(AccountOwned):
    """The figures every ROI rollup table carries (see marketing.services.rollups); money in ``currency``.

    ``sales`` counts completed Meta sales: with RepeatSale it gives the distinct customers of any window."""

    MEASURES = ("spend", "impressions", "clicks", "leads", "opportunities", "revenue", "sales")
    META_MEASURES = ("spend", "impressions", "clicks")
    CRM_MEASURES = ("leads", "opportunities", "revenue", "sales")

    currency = models.CharField(max_length=3, validators=[validate_currency])
    spend = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    impressions = models.BigIntegerField(default=0)
    clicks = models.BigIntegerField(default=0)
    leads = models.IntegerField(default=0)
    opportunities = models.IntegerField(default=0)
    revenue = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    sales = models.IntegerField(default=0)

    class Meta:
        abstract = True


class CampaignDay(RollupFigures):
    """The ROI rollup: one campaign's figures on one day, in one currency (see marketing.services.rollups).

    Meta figures (spend, impressions, clicks) sum the DailyInsight rows of the ad account's day; CRM
    figures count Meta-attributed leads and opportunities created, and sum (and count) completed sales
    closed, on the account's day. Money stays in its own currency (``currency``; leads and opportunities
    carry the account's) and is converted when read. Derived data only: rebuilt from the source rows at
    will. ``meta_campaign_id`` is "" for Meta leads whose campaign is unknown.
    """

    day = models.DateField()
    meta_campaign_id = models.CharField(verbose_name="Meta campaign ID", max_length=32, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "day", "meta_campaign_id", "currency"], name="campaignday_unique_cell"),
        ]
        indexes = [
            # The writers' reads of a day's cells (and AccountDay's sums) from the index alone on PostgreSQL.
            models.Index(fields=["account", "day"], name="campaignday_account_day",
                         include=["meta_campaign_id", "currency", "spend", "impressions", "clicks", "leads",
                                  "opportunities", "revenue", "sales"]),
            models.Index(fields=["account", "meta_campaign_id", "day"], name="campaignday_account_campaign"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.meta_campaign_id or '(no campaign)'} {self.currency}"


class AccountDay(RollupFigures):
    """The account's figures on one day in one currency: its CampaignDay rows summed (headline, chart)."""

    day = models.DateField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "day", "currency"], name="accountday_unique_cell")]

    def __str__(self) -> str:
        return f"{self.day} {self.currency}"


class CampaignToDate(RollupFigures):
    """One campaign's figures (in one currency) from its first day through ``day``: a running total.

    A row for every day from the campaign's first to its last CampaignDay row (CampaignTotal), so any
    window's figures per campaign are two rows per campaign (to ``until`` minus to ``since - 1``)."""

    day = models.DateField()
    meta_campaign_id = models.CharField(verbose_name="Meta campaign ID", max_length=32, blank=True)

    class Meta:
        verbose_name = "campaign to date"
        verbose_name_plural = "campaigns to date"
        constraints = [
            models.UniqueConstraint(fields=["account", "day", "meta_campaign_id", "currency"], name="campaigntodate_unique_cell"),
        ]
        indexes = [
            # A day's rows of every campaign from the index alone (on PostgreSQL): the rows of one day lie all
            # over the table (each campaign's span is written together), the index keeps them side by side.
            models.Index(fields=["account", "day"], name="campaigntodate_account_day",
                         include=["meta_campaign_id", "currency", "spend", "impressions", "clicks", "leads", "opportunities",
                                  "revenue", "sales"]),
        ]

    def __str__(self) -> str:
        return f"{self.meta_campaign_id or '(no campaign)'} {self.currency} to {self.day}"


class CampaignTotal(RollupFigures):
    """One campaign's figures (in one currency) over its whole history: the span of its CampaignToDate rows
    (``first_day``..``last_day``) and their last running total."""

    meta_campaign_id = models.CharField(verbose_name="Meta campaign ID", max_length=32, blank=True)
    first_day = models.DateField()
    last_day = models.DateField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "meta_campaign_id", "currency"], name="campaigntotal_unique_pair"),
        ]
        indexes = [models.Index(fields=["account", "last_day"], name="campaigntotal_account_last")]

    def __str__(self) -> str:
        return f"{self.meta_campaign_id or '(no campaign)'} {self.currency} {self.first_day}..{self.last_day}"


class RepeatSale(AccountOwned):
    """A completed Meta sale whose lead had an earlier one: what makes customers differ from sales.

    The distinct customers of a window are its sales minus its repeat sales whose previous sale (of the
    lead, or of the lead in this campaign) is in the window too. Derived from Sale, like CampaignDay."""

    sale_id = models.BigIntegerField()
    lead_id = models.BigIntegerField()
    meta_campaign_id = models.CharField(verbose_name="Meta campaign ID", max_length=32, blank=True)
    closed_at = models.DateTimeField()
    previous_closed_at = models.DateTimeField(null=True, blank=True, help_text="The lead's previous completed Meta sale")
    previous_in_campaign_closed_at = models.DateTimeField(null=True, blank=True,
                                                          help_text="The lead's previous completed Meta sale of this campaign")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "sale_id"], name="repeatsale_unique_sale")]
        indexes = [
            models.Index(fields=["account", "lead_id"], name="repeatsale_account_lead"),
            models.Index(fields=["account", "closed_at"], name="repeatsale_account_closed"),
        ]

    def __str__(self) -> str:
        return f"sale {self.sale_id} of lead {self.lead_id}"


class RollupVersion(AccountOwned):
    """The version of one account's ROI rollup: a new random token in every transaction that writes the
    rollup (``rollups.lock_account``), committed with the rows it changed. The stats cache
    (marketing/services/stats_cache.py) keys on it, so a committed rollup write makes every cached read
    of the account a miss. Random rather than a counter: a token never comes back after a rollback or a
    restored backup."""

    token = models.CharField(max_length=32)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account"], name="rollupversion_one_per_account")]

    def __str__(self) -> str:
        return f"rollup version {self.token}"


class RollupDirtyKind(models.TextChoices):
    CRM = "crm", "CRM figures of the day"  # leads, opportunities, revenue of every cell of an account day
    META = "meta", "Meta figures of the campaign's day"  # spend, impressions, clicks of one (day, campaign)


class RollupDirtyCell(AccountOwned):
    """A write changed the source rows of these rollup cells and no fold has re-derived them yet.

    Written in the writer's transaction (marketing.services.rollup_marks), one row per write and cell,
    never updated: writers of one cell never wait on each other, and a fold deletes only the rows it
    read, so a write committed while a fold runs keeps its mark. The stats reads recompute marked
    cells from the source rows until a fold has folded them (marketing.stats.pending).
    """

    Kind = RollupDirtyKind

    kind = models.CharField(max_length=4, choices=Kind.choices)
    day = models.DateField()
    meta_campaign_id = models.CharField(verbose_name="Meta campaign ID", max_length=32, blank=True,
                                        help_text="The Meta cell's campaign; blank for a CRM account day")
    marked_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["account", "day"], name="rollupdirty_account_day")]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=RollupDirtyKind.values), name="rollupdirty_kind_valid"),
            models.CheckConstraint(condition=Q(kind=RollupDirtyKind.META) | Q(meta_campaign_id=""),
                                   name="rollupdirty_crm_is_a_whole_day"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.day} {self.meta_campaign_id}".rstrip()
