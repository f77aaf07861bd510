import { describe, expect, it } from "vitest";
import { formatCurrency, formatPercentage } from "../api/marketing";
import { formatDate } from "./format";

describe("formatting money, percentages and missing values", () => {
  it("shows money with the account currency, thousands separators and 2 decimals per locale", () => {
    expect(formatCurrency(8564186.39, "USD", "en")).toBe("$8,564,186.39");
    expect(formatCurrency(8564186.39, "EUR", "es").replace(/\s/g, " ")).toBe("EUR 8.564.186,39");
    expect(formatCurrency(1234.5, "ARS", "es").replace(/\s/g, " ")).toBe("$ 1.234,50");
    expect(formatCurrency(0, "USD", "en")).toBe("$0.00");
  });

  it("shows a dash for undefined money and percentages, never 0 or NaN", () => {
    expect(formatCurrency(null, "USD", "en")).toBe("—");
    expect(formatPercentage(null, "es")).toBe("—");
    expect(formatPercentage(undefined, "en", true)).toBe("—");
  });

  it("shows percentages with one decimal and a sign on changes", () => {
    expect(formatPercentage(171.94, "en")).toBe("171.9%");
    expect(formatPercentage(-65.1, "en", true)).toBe("-65.1%");
    expect(formatPercentage(12.5, "en", true)).toBe("+12.5%");
    expect(formatPercentage(12.5, "es").replace(/\s/g, " ")).toBe("12,5%");
  });

  it("shows a calendar date as that day whatever the browser timezone", () => {
    expect(formatDate("2026-11-01", "en")).toBe("Nov 1, 2026");
  });
});
