/** The hub's time range lives in the URL: ?time_range=last_30d or ?since=YYYY-MM-DD&until=YYYY-MM-DD.
 *
 * The default is the last 30 complete days: a range that ends today holds a partial day (and Meta spend
 * still being restated), so its change against the previous period, all complete days, reads low. The
 * ranges that include today stay available and are labelled "today so far" (the API says
 * `period.complete: false`). */
import { useCallback, useMemo } from "react";
import { useSearchParams } from "react-router-dom";
import type { PresetRange, TimeRange } from "../types/marketing";

export const RANGE_CHOICES: PresetRange[] = [
  "last_7d", "last_30d", "last_90d", "last_month", "7d", "30d", "90d", "this_month", "this_year", "lifetime",
];
export const DEFAULT_RANGE: TimeRange = { preset: "last_30d" };
const DATE = /^\d{4}-\d{2}-\d{2}$/;

export function rangeFromParams(params: URLSearchParams): TimeRange {
  const since = params.get("since");
  const until = params.get("until");
  if (since && until && DATE.test(since) && DATE.test(until)) return { since, until };
  const preset = params.get("time_range") as PresetRange | null;
  return preset && RANGE_CHOICES.includes(preset) ? { preset } : DEFAULT_RANGE;
}

export function rangeKey(range: TimeRange): string {
  return "preset" in range ? range.preset : `${range.since}..${range.until}`;
}

export function useTimeRange(): [TimeRange, (range: TimeRange) => void] {
  const [params, setParams] = useSearchParams();
  const range = useMemo(() => rangeFromParams(params), [params]);
  const setRange = useCallback((next: TimeRange) => {
    setParams((current) => {
      const updated = new URLSearchParams(current);
      updated.delete("time_range");
      updated.delete("since");
      updated.delete("until");
      updated.delete("page");
      if ("preset" in next) updated.set("time_range", next.preset);
      else {
        updated.set("since", next.since);
        updated.set("until", next.until);
      }
      return updated;
    });
  }, [setParams]);
  return [range, setRange];
}
