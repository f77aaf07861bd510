"""ROI reads: the figures behind /crm/marketing/stats*, campaigns and their insights (no writes)."""
from marketing.stats.figures import collect, earliest_day  # noqa: F401
from marketing.stats.values import Converter, Figures, Scope  # noqa: F401
from marketing.stats.reports import (  # noqa: F401
    CAMPAIGN_ORDERING, CAMPAIGN_STATUSES, DEFAULT_CAMPAIGN_ORDERING, campaign_detail, campaign_for, campaign_insights,
    campaign_list, campaign_rows, marketing_stats, meta_state, roi_report, timeseries, window_for,
)
