/** The seven KPI cards of the Marketing Hub, and a note when the period includes today (still running). */
import { useTranslation } from "react-i18next";
import { formatCurrency, formatDate, formatNumber, formatPercentage } from "../lib/format";
import type { MarketingStats } from "../types/marketing";
import { MarketingPerformanceCard } from "./MarketingPerformanceCard";

export function KpiGrid({ stats }: { stats: MarketingStats }) {
  const { t, i18n } = useTranslation();
  const language = i18n.language;
  const money = (value: number | null) => formatCurrency(value, stats.currency, language);
  const previous = t("kpi.period", {
    since: formatDate(stats.previous_period.since, language),
    until: formatDate(stats.previous_period.until, language),
  });
  return (
    <>
      {!stats.period.complete && <p className="kpi-note muted" role="note" id="today-so-far">{t("kpi.todaySoFar")}</p>}
      <div className="kpi-grid" id="kpi-cards">
        <MarketingPerformanceCard label={t("kpi.leads")} value={formatNumber(stats.leads, language)} change={stats.leads_change} previousPeriod={previous} />
        <MarketingPerformanceCard label={t("kpi.opportunities")} value={formatNumber(stats.opportunities, language)} change={stats.opportunities_change} previousPeriod={previous} />
        <MarketingPerformanceCard label={t("kpi.revenue")} value={money(stats.sales_revenue)} change={stats.revenue_change} previousPeriod={previous} />
        <MarketingPerformanceCard label={t("kpi.spend")} value={money(stats.marketing_spend)} change={stats.spend_change} higherIsBetter={false} previousPeriod={previous} />
        <MarketingPerformanceCard label={t("kpi.roi")} value={formatPercentage(stats.roi_percentage, language)} change={stats.roi_change} previousPeriod={previous} />
        <MarketingPerformanceCard label={t("kpi.cpa")} value={money(stats.cpa)} hint={t("kpi.cpaHint")} />
        <MarketingPerformanceCard label={t("kpi.cpl")} value={money(stats.cost_per_lead)} hint={t("kpi.cplHint")} />
      </div>
    </>
  );
}
