/** The campaigns of the range: status badge, spend, leads, opportunities, revenue, ROI, CPA; sortable, paged. */
import { useState } from "react";
import { ArrowDown, ArrowUp } from "lucide-react";
import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { Link } from "react-router-dom";
import { marketingApi } from "../api/marketing";
import { formatCurrency, formatNumber, formatPercentage } from "../lib/format";
import { rangeKey } from "../lib/range";
import { useFormat } from "../session";
import type { CampaignStatus, TimeRange } from "../types/marketing";
import { Empty, ErrorMessage, Loading } from "./States";

export const PAGE_SIZE = 25;
type SortField = "spend" | "revenue" | "roi" | "leads" | "name";

export function StatusBadge({ status }: { status: CampaignStatus | string }) {
  const { t } = useTranslation();
  return <span className={`badge status-${status.toLowerCase()}`}>{t(`campaignStatus.${status}`, { defaultValue: status })}</span>;
}

export const DEFAULT_ORDERING = "-spend";

/** The first page's query, shared with MarketingHubView's prefetch (started with the stats, not after them). */
export function firstCampaignPage(range: TimeRange) {
  return {
    queryKey: ["campaigns", rangeKey(range), DEFAULT_ORDERING, 0],
    queryFn: () => marketingApi.getCampaigns({ range, ordering: DEFAULT_ORDERING, limit: PAGE_SIZE, offset: 0 }),
  };
}

export function CampaignTable({ range, search, live = false }: { range: TimeRange; search: string; live?: boolean }) {
  const { t } = useTranslation();
  const { language } = useFormat();
  const [ordering, setOrdering] = useState<string>(DEFAULT_ORDERING);
  const [offset, setOffset] = useState(0);
  const campaigns = useQuery({
    queryKey: ["campaigns", rangeKey(range), ordering, offset],
    queryFn: () => marketingApi.getCampaigns({ range, ordering, limit: PAGE_SIZE, offset }),
    placeholderData: keepPreviousData,
    refetchInterval: live ? 3000 : false,
  });

  function sortBy(field: SortField) {
    setOffset(0);
    setOrdering((current) => (current === `-${field}` ? field : `-${field}`));
  }

  function header(field: SortField, label: string, numeric = true) {
    const active = ordering.replace("-", "") === field;
    const descending = ordering.startsWith("-");
    return (
      <th scope="col" className={numeric ? "num" : ""} aria-sort={active ? (descending ? "descending" : "ascending") : "none"}>
        <button type="button" className="sort" onClick={() => sortBy(field)}>
          {label}
          {active && (descending ? <ArrowDown size={12} aria-hidden="true" /> : <ArrowUp size={12} aria-hidden="true" />)}
        </button>
      </th>
    );
  }

  if (campaigns.isPending) return <Loading label={t("campaigns.loading")} />;
  if (campaigns.isError) return <ErrorMessage error={campaigns.error} onRetry={() => campaigns.refetch()} />;
  const page = campaigns.data;
  if (page.total === 0) {
    return <Empty title={t("campaigns.emptyTitle")}>{t("campaigns.emptyBody")}</Empty>;
  }
  const last = Math.min(page.offset + page.results.length, page.total);
  return (
    <div className="table-wrap">
      <table className="data-table" id="campaign-table">
        <caption className="sr-only">{t("campaigns.title")}</caption>
        <thead>
          <tr>
            {header("name", t("campaigns.name"), false)}
            <th scope="col">{t("campaigns.status")}</th>
            {header("spend", t("campaigns.spend"))}
            {header("leads", t("campaigns.leads"))}
            <th scope="col" className="num">{t("campaigns.opportunities")}</th>
            {header("revenue", t("campaigns.revenue"))}
            {header("roi", t("campaigns.roi"))}
            <th scope="col" className="num">{t("campaigns.cpa")}</th>
          </tr>
        </thead>
        <tbody>
          {page.results.map((c) => (
            <tr key={c.id}>
              <th scope="row"><Link to={`/campaigns/${encodeURIComponent(c.id)}${search}`}>{c.name}</Link></th>
              <td><StatusBadge status={c.status} /></td>
              <td className="num">{formatCurrency(c.spend, c.currency, language)}</td>
              <td className="num">{formatNumber(c.leads, language)}</td>
              <td className="num">{formatNumber(c.opportunities, language)}</td>
              <td className="num">{formatCurrency(c.revenue, c.currency, language)}</td>
              <td className={`num ${c.roi === null ? "" : c.roi >= 0 ? "good" : "bad"}`}>{formatPercentage(c.roi, language)}</td>
              <td className="num">{formatCurrency(c.cpa, c.currency, language)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <div className="pager">
        <span>{t("campaigns.showing", { first: page.offset + 1, last, total: page.total })}</span>
        <button type="button" className="button secondary small" disabled={page.offset === 0}
          onClick={() => setOffset(Math.max(0, offset - PAGE_SIZE))}>{t("common.previous")}</button>
        <button type="button" className="button secondary small" disabled={last >= page.total}
          onClick={() => setOffset(offset + PAGE_SIZE)}>{t("common.next")}</button>
      </div>
    </div>
  );
}
