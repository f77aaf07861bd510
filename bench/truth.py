"""The ROI truth check: every figure of /crm/marketing/stats and /stats/roi equals an independent SQL
recomputation from the raw tables (leads, opportunities, sales, daily insights), never from the rollups.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crm_bench_rollread .venv/bin/python bench/truth.py [--ranges 30d,90d,lifetime]

For each range it asks the two endpoints (Django's test Client, as bench/stats.py), takes their periods, and
recomputes in SQL: Meta leads created in the window (account timezone), opportunities of Meta leads, completed
sales of Meta leads (attribution read from the lead row, not the sale's copy) and their distinct leads, insight
spend, impressions and clicks by date; money converted with the account's ExchangeRate rows. Ratios and changes
are derived and rounded as the API documents (2 decimals for money, 1 for percentages, half up). It also checks
that ``lifetime`` starts on the first day with a lead, a sale or an insight. Prints one line per endpoint and
range with the number of figures compared, every difference, and exits 1 if there is any.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/crm_bench"
RANGES = ("30d", "90d", "lifetime")
META = ("meta_lead_ads", "meta_ctwa")
CENT, TENTH, HUNDRED = Decimal("0.01"), Decimal("0.1"), Decimal(100)


def rounded(value: Decimal | None, quantum: Decimal) -> float | None:
    return None if value is None else float(value.quantize(quantum, rounding=ROUND_HALF_UP)) + 0.0


def ratio(numerator, divisor, scale=1) -> Decimal | None:
    return None if not divisor else Decimal(numerator) / Decimal(divisor) * scale


def change(current, previous) -> Decimal | None:
    return None if not previous else (Decimal(current) - Decimal(previous)) / Decimal(previous) * HUNDRED


class Raw:
    """Figures of one window per campaign ("" = Meta leads without one), straight from the raw tables."""

    def __init__(self, cursor, account: dict, since: str, until: str):
        self.figures: dict[str, dict] = defaultdict(lambda: {"leads": 0, "opportunities": 0, "revenue": Decimal(0), "spend": Decimal(0),
                                                             "impressions": 0, "clicks": 0, "customers": 0})
        self.customers = 0
        window = {"account": account["id"], "since": since, "until": until, "tz": account["timezone"], "meta": list(META)}
        start_end = ("created_at >= (%(since)s::date)::timestamp AT TIME ZONE %(tz)s "
                     "AND created_at < (%(until)s::date + 1)::timestamp AT TIME ZONE %(tz)s")
        rate = account["rates"]
        cursor.execute(f"SELECT meta_campaign_id, count(*) FROM crm_marketing_lead WHERE account_id = %(account)s "
                       f"AND lead_source = ANY(%(meta)s) AND {start_end} GROUP BY 1", window)
        for campaign, n in cursor.fetchall():
            self.figures[campaign]["leads"] = n
        cursor.execute(f"SELECT l.meta_campaign_id, count(*) FROM crm_marketing_opportunity o JOIN crm_marketing_lead l ON l.id = o.lead_id "
                       f"WHERE o.account_id = %(account)s AND l.lead_source = ANY(%(meta)s) AND {start_end.replace('created_at', 'o.created_at')} "
                       f"GROUP BY 1", window)
        for campaign, n in cursor.fetchall():
            self.figures[campaign]["opportunities"] = n
        closed = start_end.replace("created_at", "s.closed_at")
        sales = (f"FROM crm_marketing_sale s JOIN crm_marketing_lead l ON l.id = s.lead_id WHERE s.account_id = %(account)s "
                 f"AND s.status = 'completed' AND l.lead_source = ANY(%(meta)s) AND {closed}")
        cursor.execute(f"SELECT l.meta_campaign_id, s.currency, sum(s.amount) {sales} GROUP BY 1, 2", window)
        for campaign, currency, amount in cursor.fetchall():
            self.figures[campaign]["revenue"] += amount * rate[currency]
        cursor.execute(f"SELECT l.meta_campaign_id, count(DISTINCT s.lead_id) {sales} GROUP BY 1", window)
        for campaign, n in cursor.fetchall():
            self.figures[campaign]["customers"] = n
        cursor.execute(f"SELECT count(DISTINCT s.lead_id) {sales}", window)
        self.customers = cursor.fetchone()[0]
        cursor.execute("SELECT meta_campaign_id, currency, sum(spend), sum(impressions), sum(clicks) FROM marketing_dailyinsight "
                       "WHERE account_id = %(account)s AND date BETWEEN %(since)s AND %(until)s GROUP BY 1, 2", window)
        for campaign, currency, spend, impressions, clicks in cursor.fetchall():
            figures = self.figures[campaign]
            figures["spend"] += spend * rate[currency]
            figures["impressions"] += impressions
            figures["clicks"] += clicks

    def total(self, name: str):
        return sum((f[name] for f in self.figures.values()), Decimal(0) if name in ("revenue", "spend") else 0)

    def roi(self, figures: dict | None = None) -> Decimal | None:
        spend, revenue = (figures["spend"], figures["revenue"]) if figures else (self.total("spend"), self.total("revenue"))
        return ratio(revenue - spend, spend, HUNDRED)


def account_of(cursor, slug: str) -> dict:
    cursor.execute("SELECT id, timezone, currency FROM crm_marketing_account WHERE slug = %s", [slug])
    account_id, tz, currency = cursor.fetchone()
    cursor.execute("SELECT from_currency, to_currency, rate FROM marketing_exchangerate WHERE account_id = %s", [account_id])
    rates = {currency: Decimal(1)}
    for source, target, rate in sorted(cursor.fetchall(), key=lambda row: row[1] == currency):  # the wanted direction wins
        if target == currency:
            rates[source] = rate
        elif source == currency:
            rates[target] = Decimal(1) / rate
    return {"id": account_id, "timezone": tz, "currency": currency, "rates": rates}


def expected_stats(current: Raw, previous: Raw) -> dict:
    spend, revenue = current.total("spend"), current.total("revenue")
    roi, previous_roi = current.roi(), previous.roi()
    return {
        "leads": current.total("leads"), "leads_change": rounded(change(current.total("leads"), previous.total("leads")), TENTH),
        "opportunities": current.total("opportunities"),
        "opportunities_change": rounded(change(current.total("opportunities"), previous.total("opportunities")), TENTH),
        "sales_revenue": rounded(revenue, CENT), "revenue_change": rounded(change(revenue, previous.total("revenue")), TENTH),
        "marketing_spend": rounded(spend, CENT), "spend_change": rounded(change(spend, previous.total("spend")), TENTH),
        "roi_percentage": rounded(roi, TENTH),
        "roi_change": rounded(roi - previous_roi if roi is not None and previous_roi is not None else None, TENTH),
        "cpa": rounded(ratio(spend, current.customers), CENT), "cost_per_lead": rounded(ratio(spend, current.total("leads")), CENT),
    }


def expected_roi(current: Raw, names: dict[str, tuple[str, str]]) -> dict:
    campaigns = {}
    for campaign, (name, status) in names.items():
        f = current.figures.get(campaign)
        if f is None or not any(f[k] for k in ("spend", "impressions", "clicks", "leads", "opportunities", "revenue")):
            continue
        campaigns[campaign] = {"id": campaign, "name": name, "status": status, "spend": rounded(f["spend"], CENT),
                               "impressions": f["impressions"], "clicks": f["clicks"], "leads": f["leads"],
                               "opportunities": f["opportunities"], "revenue": rounded(f["revenue"], CENT),
                               "roi": rounded(current.roi(f), TENTH), "cpa": rounded(ratio(f["spend"], f["customers"]), CENT)}
    return {"campaigns": campaigns, "total_spend": rounded(current.total("spend"), CENT),
            "total_revenue": rounded(current.total("revenue"), CENT), "average_roi": rounded(current.roi(), TENTH)}


def differences(expected: dict, answered: dict, where: str) -> list[str]:
    out = []
    for name, value in expected.items():
        if isinstance(value, dict) and name == "campaigns":
            got = {row["id"]: {k: v for k, v in row.items() if k != "currency"} for row in answered["campaigns"]}
            for campaign in sorted(set(value) | set(got)):
                if value.get(campaign) != got.get(campaign):
                    out.append(f"{where} campaign {campaign}: expected {value.get(campaign)}, answered {got.get(campaign)}")
        elif answered.get(name) != value:
            out.append(f"{where} {name}: expected {value!r}, answered {answered.get(name)!r}")
    return out


def check(client, ranges: list[str], slug: str = "bench") -> int:
    """Compare the endpoints with the raw tables for each range; returns the number of differences."""
    from django.db import connection

    problems, compared = [], 0
    with connection.cursor() as cursor:
        account = account_of(cursor, slug)
        cursor.execute("SELECT meta_campaign_id, name, status FROM marketing_campaign WHERE account_id = %s", [account["id"]])
        names = {campaign: (name, status) for campaign, name, status in cursor.fetchall()}
        cursor.execute("SELECT least((SELECT min(created_at AT TIME ZONE %(tz)s)::date FROM crm_marketing_lead WHERE account_id = %(a)s), "
                       "(SELECT min(closed_at AT TIME ZONE %(tz)s)::date FROM crm_marketing_sale WHERE account_id = %(a)s), "
                       "(SELECT min(date) FROM marketing_dailyinsight WHERE account_id = %(a)s))",
                       {"tz": account["timezone"], "a": account["id"]})
        first_day = cursor.fetchone()[0]
        for time_range in ranges:
            started = time.perf_counter()
            stats = client.get(f"/crm/marketing/stats?time_range={time_range}").json()["data"]
            roi = client.get(f"/crm/marketing/stats/roi?time_range={time_range}").json()["data"]
            current = Raw(cursor, account, stats["period"]["since"], stats["period"]["until"])
            previous = Raw(cursor, account, stats["previous_period"]["since"], stats["previous_period"]["until"])
            found = differences(expected_stats(current, previous), stats, f"stats {time_range}")
            if roi["period"] != stats["period"]:
                found.append(f"stats/roi {time_range} period {roi['period']} != stats period {stats['period']}")
            if time_range == "lifetime" and stats["period"]["since"] != first_day.isoformat():
                found.append(f"lifetime starts {stats['period']['since']}, the first activity is on {first_day}")
            expected = expected_roi(current, names)
            found += differences(expected, roi, f"stats/roi {time_range}")
            figures = 12 + 11 * len(expected["campaigns"]) + 3
            compared += figures
            problems += found
            print(f"truth {time_range:<9} stats + stats/roi: {figures:,} figures ({len(expected['campaigns']):,} campaigns), "
                  f"{len(found)} differences ({time.perf_counter() - started:.0f} s)", flush=True)
    for line in problems[:50]:
        print("  DIFFERENT", line)
    print(f"truth check: {compared:,} figures compared, {len(problems)} differences")
    return len(problems)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranges", default=",".join(RANGES))
    args = parser.parse_args()
    os.environ.setdefault("DATABASE_URL", DEFAULT_URL)
    os.environ.setdefault("API_RATE_LIMIT", "1000000/m")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm_marketing.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench"))
    sys.exit(1 if check(client, [r for r in args.ranges.split(",") if r]) else 0)


if __name__ == "__main__":
    main()
