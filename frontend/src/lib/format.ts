/** Intl formatting for the hub's locale, the account's currency and timezone. Null is "—". */

export const DASH = "—";

export function localeTag(language: string): string {
  return language.startsWith("en") ? "en-US" : "es-AR";
}

export function formatCurrency(value: number | null | undefined, currency: string, language = "es"): string {
  if (value === null || value === undefined || Number.isNaN(value)) return DASH;
  try {
    return new Intl.NumberFormat(localeTag(language), {
      style: "currency", currency, minimumFractionDigits: 2, maximumFractionDigits: 2,
    }).format(value);
  } catch {
    return `${formatNumber(value, language)} ${currency}`;
  }
}

/** 12.5 -> "12,5 %" (es) / "12.5%" (en). `signed` adds + to positive values (changes). */
export function formatPercentage(value: number | null | undefined, language = "es", signed = false): string {
  if (value === null || value === undefined || Number.isNaN(value)) return DASH;
  return new Intl.NumberFormat(localeTag(language), {
    style: "percent", minimumFractionDigits: 0, maximumFractionDigits: 1,
    signDisplay: signed ? "exceptZero" : "auto",
  }).format(value / 100);
}

export function formatNumber(value: number | null | undefined, language = "es"): string {
  if (value === null || value === undefined || Number.isNaN(value)) return DASH;
  return new Intl.NumberFormat(localeTag(language)).format(value);
}

/** A calendar date (YYYY-MM-DD, already in the account's timezone) without shifting it. */
export function formatDate(isoDate: string | null | undefined, language = "es"): string {
  if (!isoDate) return DASH;
  const [year, month, day] = isoDate.slice(0, 10).split("-").map(Number);
  return new Intl.DateTimeFormat(localeTag(language), { dateStyle: "medium", timeZone: "UTC" }).format(
    new Date(Date.UTC(year, month - 1, day)),
  );
}

/** A moment (ISO 8601 with offset) shown in the account's timezone. */
export function formatDateTime(iso: string | null | undefined, language = "es", timeZone = "UTC"): string {
  if (!iso) return DASH;
  try {
    return new Intl.DateTimeFormat(localeTag(language), { dateStyle: "medium", timeStyle: "short", timeZone }).format(
      new Date(iso),
    );
  } catch {
    return new Date(iso).toISOString();
  }
}
