/** One KPI: the figure, its change against the previous period (arrow and colour), "—" when undefined. */
import { ArrowDownRight, ArrowUpRight, Minus } from "lucide-react";
import { useTranslation } from "react-i18next";
import { formatPercentage } from "../lib/format";

export interface MarketingPerformanceCardProps {
  label: string;
  value: string;
  change?: number | null;
  /** Spend and costs going up is bad news: colour the change the other way. */
  higherIsBetter?: boolean;
  previousPeriod?: string;
  hint?: string;
}

export function MarketingPerformanceCard({ label, value, change, higherIsBetter = true, previousPeriod, hint }: MarketingPerformanceCardProps) {
  const { t, i18n } = useTranslation();
  const hasChange = change !== undefined;
  const direction = change === null || change === undefined || change === 0 ? "flat" : change > 0 ? "up" : "down";
  const good = direction === "flat" ? "neutral" : (direction === "up") === higherIsBetter ? "good" : "bad";
  const Icon = direction === "up" ? ArrowUpRight : direction === "down" ? ArrowDownRight : Minus;
  const changeTitle = previousPeriod ? t("kpi.vsPrevious", { period: previousPeriod }) : undefined;
  return (
    <article className="kpi-card" data-testid="marketingperformancecard-container" aria-label={label}>
      <h3 className="kpi-label">{label}</h3>
      <p className="kpi-value">{value}</p>
      {hasChange && (
        <p className={`kpi-change ${good}`} title={changeTitle}>
          {change !== null && <Icon size={16} aria-hidden="true" />}
          <span>{formatPercentage(change ?? null, i18n.language, true)}</span>
          <span className="sr-only">{changeTitle}</span>
        </p>
      )}
      {hint && <p className="kpi-hint">{hint}</p>}
    </article>
  );
}
