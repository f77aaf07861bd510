/** Spend vs revenue over time, drawn with uPlot (a ~20 KB time-series library) and loaded lazily so the
 * KPI cards never wait for it. The hover legend under the chart shows each day's figures. */
import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { useTranslation } from "react-i18next";
import { formatCurrency, formatDate, localeTag } from "../lib/format";

export interface ChartPoint {
  date: string;
  spend: number | null;
  revenue: number | null;
}

const HEIGHT = 260;
const SPEND = "#dc6b19";
const REVENUE = "#1a7f5a";

function epochSeconds(isoDate: string): number {
  return Date.parse(`${isoDate.slice(0, 10)}T00:00:00Z`) / 1000;
}

function isoDay(seconds: number): string {
  return new Date(seconds * 1000).toISOString().slice(0, 10);
}

// The points are calendar days: ticks every whole day or more (uPlot's own steps from a day up), so a week is not
// labelled at noon too (each date twice).
const DAY = 86_400;
const DAY_INCREMENTS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 30, 60, 90, 120, 180, 365, 730, 1825, 3650].map((days) => days * DAY);

export default function SpendRevenueChart({ points, currency }: { points: ChartPoint[]; currency: string }) {
  const { t, i18n } = useTranslation();
  const language = i18n.language;
  const box = useRef<HTMLDivElement>(null);

  useEffect(() => {
    const element = box.current;
    if (!element) return;
    const tick = new Intl.DateTimeFormat(localeTag(language), { day: "numeric", month: "short", timeZone: "UTC" });
    const compact = new Intl.NumberFormat(localeTag(language), { notation: "compact", maximumFractionDigits: 1 });
    const money = (_: uPlot, value: number | null) => formatCurrency(value, currency, language);
    const data: uPlot.AlignedData = [
      points.map((p) => epochSeconds(p.date)),
      points.map((p) => p.spend),
      points.map((p) => p.revenue),
    ];
    const options: uPlot.Options = {
      width: Math.max(element.clientWidth, 320),
      height: HEIGHT,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "UTC"), // the API's dates are calendar days
      scales: { x: { time: true } },
      series: [
        { label: t("metric.date"), value: (_, v) => (v == null ? "—" : formatDate(isoDay(v), language)) },
        { label: t("chart.spend"), stroke: SPEND, fill: "rgba(220,107,25,.12)", width: 2, value: money, points: { show: false } },
        { label: t("chart.revenue"), stroke: REVENUE, fill: "rgba(26,127,90,.12)", width: 2, value: money, points: { show: false } },
      ],
      axes: [
        { values: (_, ticks) => ticks.map((v) => tick.format(new Date(v * 1000))), space: 70, incrs: DAY_INCREMENTS, grid: { stroke: "#eef0f3" }, stroke: "#5b6576" },
        { values: (_, ticks) => ticks.map((v) => compact.format(v)), grid: { stroke: "#eef0f3" }, stroke: "#5b6576", size: 60 },
      ],
    };
    const chart = new uPlot(options, data, element);
    const resize = new ResizeObserver(() => chart.setSize({ width: Math.max(element.clientWidth, 320), height: HEIGHT }));
    resize.observe(element);
    return () => {
      resize.disconnect();
      chart.destroy();
    };
  }, [points, currency, language, t]);

  return <div className="chart" ref={box} role="img" aria-label={t("chart.label")} />;
}
