/** Spend vs revenue over time (Recharts; loaded lazily so the KPI cards don't wait for it). */
import { Area, AreaChart, CartesianGrid, Legend, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { useTranslation } from "react-i18next";
import { formatCurrency, formatDate } from "../lib/format";

export interface ChartPoint {
  date: string;
  spend: number | null;
  revenue: number | null;
}

export default function SpendRevenueChart({ points, currency }: { points: ChartPoint[]; currency: string }) {
  const { t, i18n } = useTranslation();
  const language = i18n.language;
  const compact = new Intl.NumberFormat(language.startsWith("en") ? "en-US" : "es-AR", { notation: "compact", maximumFractionDigits: 1 });
  return (
    <div className="chart" role="img" aria-label={t("chart.label")}>
      <ResponsiveContainer width="100%" height={260}>
        <AreaChart data={points} margin={{ top: 8, right: 16, bottom: 0, left: 0 }}>
          <CartesianGrid strokeDasharray="3 3" stroke="#e5e7eb" />
          <XAxis dataKey="date" tickFormatter={(d: string) => formatDate(d, language)} tick={{ fontSize: 12 }} minTickGap={24} />
          <YAxis tickFormatter={(v: number) => compact.format(v)} tick={{ fontSize: 12 }} width={56} />
          <Tooltip
            labelFormatter={(d) => formatDate(String(d), language)}
            formatter={(value, name) => [formatCurrency(Number(value), currency, language), String(name)]}
          />
          <Legend />
          <Area type="monotone" dataKey="spend" name={t("chart.spend")} stroke="#dc6b19" fill="#fde7d4" strokeWidth={2} isAnimationActive={false} />
          <Area type="monotone" dataKey="revenue" name={t("chart.revenue")} stroke="#1a7f5a" fill="#d6f2e6" strokeWidth={2} isAnimationActive={false} />
        </AreaChart>
      </ResponsiveContainer>
    </div>
  );
}
