/** /hub/campaigns/:id: the campaign's budget and performance over the range, its daily chart and insights. */
import { lazy, Suspense } from "react";
import { ArrowLeft } from "lucide-react";
import { useQuery } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { Link, useLocation, useParams } from "react-router-dom";
import { marketingApi } from "../api/marketing";
import { StatusBadge } from "../components/CampaignTable";
import { RangeSelector } from "../components/RangeSelector";
import { Empty, ErrorMessage, Loading } from "../components/States";
import { formatCurrency, formatDate, formatDateTime, formatNumber, formatPercentage } from "../lib/format";
import { rangeKey, useTimeRange } from "../lib/range";
import { useFormat, useSession } from "../session";
import { NoAccess } from "./MarketingHubView";

const SpendRevenueChart = lazy(() => import("../components/SpendRevenueChart"));

export function CampaignView() {
  const { t } = useTranslation();
  const { id = "" } = useParams();
  const { search } = useLocation();
  const { canSeeMarketing } = useSession();
  const { language, timeZone } = useFormat();
  const [range, setRange] = useTimeRange();
  const detail = useQuery({ queryKey: ["campaign", id, rangeKey(range)], queryFn: () => marketingApi.getCampaign(id, range), enabled: canSeeMarketing });
  const insights = useQuery({ queryKey: ["campaign-insights", id, rangeKey(range)], queryFn: () => marketingApi.getCampaignInsights(id, range), enabled: canSeeMarketing });
  if (!canSeeMarketing) return <NoAccess />;

  const currency = detail.data?.currency ?? "USD";
  const money = (value: number | null) => formatCurrency(value, currency, language);
  return (
    <div className="page" data-testid="campaignview-container">
      <Link to={`/marketing${search}`} className="back"><ArrowLeft size={14} aria-hidden="true" /> {t("campaign.back")}</Link>
      {detail.isPending && <Loading label={t("campaign.loading")} />}
      {detail.isError && <ErrorMessage error={detail.error} />}
      {detail.data && (
        <>
          <header className="page-header">
            <div>
              <h1>{detail.data.name} <StatusBadge status={detail.data.status} /></h1>
              <p className="muted">
                {t("campaign.objective")}: {detail.data.objective || "—"} · {t("campaign.budget")}:{" "}
                {detail.data.daily_budget !== null
                  ? t("campaign.daily", { amount: formatCurrency(detail.data.daily_budget, detail.data.budget_currency ?? currency, language) })
                  : detail.data.lifetime_budget !== null
                    ? t("campaign.lifetime", { amount: formatCurrency(detail.data.lifetime_budget, detail.data.budget_currency ?? currency, language) })
                    : "—"}
                {" · "}{formatDateTime(detail.data.start_time, language, timeZone)} – {detail.data.end_time ? formatDateTime(detail.data.end_time, language, timeZone) : t("campaign.ongoing")}
              </p>
            </div>
            <RangeSelector key={rangeKey(range)} range={range} onChange={setRange} />
          </header>
          <dl className="figures">
            {([
              ["spend", money(detail.data.performance.spend)],
              ["revenue", money(detail.data.performance.revenue)],
              ["roi", formatPercentage(detail.data.performance.roi_percentage, language)],
              ["leads", formatNumber(detail.data.performance.leads, language)],
              ["opportunities", formatNumber(detail.data.performance.opportunities, language)],
              ["cpa", money(detail.data.performance.cpa)],
              ["impressions", formatNumber(detail.data.performance.impressions, language)],
              ["clicks", formatNumber(detail.data.performance.clicks, language)],
              ["ctr", formatPercentage(detail.data.performance.ctr, language)],
              ["cpc", money(detail.data.performance.cpc)],
              ["cpm", money(detail.data.performance.cpm)],
            ] as const).map(([key, value]) => (
              <div key={key}><dt>{t(`metric.${key}`)}</dt><dd>{value}</dd></div>
            ))}
          </dl>
        </>
      )}
      <section className="card">
        <h2>{t("campaign.daily_title")}</h2>
        {insights.isPending && <Loading />}
        {insights.isError && <ErrorMessage error={insights.error} />}
        {insights.data && insights.data.insights.length === 0 && <Empty title={t("campaign.noInsights")}>{t("chart.emptyBody")}</Empty>}
        {insights.data && insights.data.insights.length > 0 && (
          <>
            <Suspense fallback={<Loading />}>
              <SpendRevenueChart points={insights.data.insights} currency={currency} />
            </Suspense>
            <p className="muted small">{t("campaign.attribution", { window: insights.data.attribution_window })}</p>
            <div className="table-wrap scroll-y">
              <table className="data-table">
                <thead>
                  <tr>
                    <th scope="col">{t("metric.date")}</th>
                    {(["spend", "impressions", "clicks", "leads", "opportunities", "revenue", "cpa", "ctr"] as const).map((key) => (
                      <th scope="col" className="num" key={key}>{t(`metric.${key}`)}</th>
                    ))}
                  </tr>
                </thead>
                <tbody>
                  {[...insights.data.insights].reverse().map((day) => (
                    <tr key={day.date}>
                      <th scope="row">{formatDate(day.date, language)}</th>
                      <td className="num">{money(day.spend)}</td>
                      <td className="num">{formatNumber(day.impressions, language)}</td>
                      <td className="num">{formatNumber(day.clicks, language)}</td>
                      <td className="num">{formatNumber(day.leads, language)}</td>
                      <td className="num">{formatNumber(day.opportunities, language)}</td>
                      <td className="num">{money(day.revenue)}</td>
                      <td className="num">{money(day.cpa)}</td>
                      <td className="num">{formatPercentage(day.ctr, language)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </>
        )}
      </section>
    </div>
  );
}
