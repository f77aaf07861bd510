/** last_30d / 7d / … / custom dates; the choice is kept in the URL by useTimeRange. */
import { useState, type FormEvent } from "react";
import { useTranslation } from "react-i18next";
import { RANGE_CHOICES } from "../lib/range";
import type { TimeRange } from "../types/marketing";

export function RangeSelector({ range, onChange }: { range: TimeRange; onChange: (range: TimeRange) => void }) {
  const { t } = useTranslation();
  const [custom, setCustom] = useState("since" in range);
  const [since, setSince] = useState("since" in range ? range.since : "");
  const [until, setUntil] = useState("since" in range ? range.until : "");
  const current = "preset" in range && !custom ? range.preset : "custom";

  function submit(event: FormEvent) {
    event.preventDefault();
    if (since && until && since <= until) onChange({ since, until });
  }

  return (
    <div className="range-selector">
      <label htmlFor="range-select" className="sr-only">{t("range.label")}</label>
      <select
        id="range-select"
        value={current}
        onChange={(event) => {
          const value = event.target.value;
          if (value === "custom") setCustom(true);
          else {
            setCustom(false);
            onChange({ preset: value as (typeof RANGE_CHOICES)[number] });
          }
        }}
      >
        {RANGE_CHOICES.map((choice) => <option key={choice} value={choice}>{t(`range.${choice}`)}</option>)}
        <option value="custom">{t("range.custom")}</option>
      </select>
      {current === "custom" && (
        <form className="range-custom" onSubmit={submit}>
          <label>{t("range.since")} <input type="date" value={since} onChange={(e) => setSince(e.target.value)} required /></label>
          <label>{t("range.until")} <input type="date" value={until} min={since} onChange={(e) => setUntil(e.target.value)} required /></label>
          <button type="submit" className="button secondary">{t("range.apply")}</button>
        </form>
      )}
    </div>
  );
}
