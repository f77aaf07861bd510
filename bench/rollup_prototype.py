"""Measure the proposed ROI rollups before building them (see bench/README.md, "Rollup design").

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crm_bench .venv/bin/python bench/rollup_prototype.py

On the database bench/generate.py built, creates scratch tables named proto_* (not project
models) shaped like the proposed rollups, times the SQL the stats reads would then issue for
30d, 90d and lifetime (medians of 10), and drops the scratch tables again:
- proto_campaign_day: (account, day, meta_campaign_id, currency) -> spend, impressions, clicks,
  leads, opportunities, revenue  (Meta figures on the ad account's day, CRM ones on the account's);
- proto_account_day: the same summed over campaigns (headline figures and the timeseries);
- proto_sale_attr: sales with their lead's attribution copied on, for exact distinct customers.
"""
from __future__ import annotations

import os
import statistics
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/crm_bench"
META = "('meta_lead_ads', 'meta_ctwa')"

BUILD = f"""
DROP TABLE IF EXISTS proto_campaign_day, proto_account_day, proto_sale_attr;
CREATE TABLE proto_sale_attr AS
  SELECT s.account_id, s.closed_at, s.status, s.currency, s.amount, s.lead_id, l.lead_source, l.meta_campaign_id
  FROM crm_marketing_sale s JOIN crm_marketing_lead l ON l.id = s.lead_id ORDER BY s.closed_at;
CREATE INDEX ON proto_sale_attr (account_id, status, closed_at) INCLUDE (lead_source, meta_campaign_id, lead_id);
CREATE TABLE proto_campaign_day AS
WITH tz AS (SELECT id, timezone FROM crm_marketing_account),
parts AS (
  SELECT account_id, date AS day, meta_campaign_id, currency, spend, impressions, clicks, 0 AS leads, 0 AS opportunities, 0::numeric AS revenue
  FROM marketing_dailyinsight
  UNION ALL
  SELECT l.account_id, (l.created_at AT TIME ZONE tz.timezone)::date, l.meta_campaign_id, a.currency, 0, 0, 0, 1, 0, 0
  FROM crm_marketing_lead l JOIN tz ON tz.id = l.account_id JOIN crm_marketing_account a ON a.id = l.account_id
  WHERE l.lead_source IN {META}
  UNION ALL
  SELECT o.account_id, (o.created_at AT TIME ZONE tz.timezone)::date, l.meta_campaign_id, a.currency, 0, 0, 0, 0, 1, 0
  FROM crm_marketing_opportunity o JOIN crm_marketing_lead l ON l.id = o.lead_id JOIN tz ON tz.id = o.account_id
  JOIN crm_marketing_account a ON a.id = o.account_id WHERE l.lead_source IN {META}
  UNION ALL
  SELECT s.account_id, (s.closed_at AT TIME ZONE tz.timezone)::date, s.meta_campaign_id, s.currency, 0, 0, 0, 0, 0, s.amount
  FROM proto_sale_attr s JOIN tz ON tz.id = s.account_id WHERE s.status = 'completed' AND s.lead_source IN {META})
SELECT account_id, day, meta_campaign_id, currency, sum(spend) spend, sum(impressions) impressions, sum(clicks) clicks,
       sum(leads) leads, sum(opportunities) opportunities, sum(revenue) revenue
FROM parts GROUP BY 1, 2, 3, 4;
CREATE UNIQUE INDEX ON proto_campaign_day (account_id, day, meta_campaign_id, currency)
  INCLUDE (spend, impressions, clicks, leads, opportunities, revenue);
CREATE TABLE proto_account_day AS
  SELECT account_id, day, currency, sum(spend) spend, sum(impressions) impressions, sum(clicks) clicks,
         sum(leads) leads, sum(opportunities) opportunities, sum(revenue) revenue
  FROM proto_campaign_day GROUP BY 1, 2, 3;
CREATE UNIQUE INDEX ON proto_account_day (account_id, day, currency) INCLUDE (spend, impressions, clicks, leads, opportunities, revenue);
VACUUM ANALYZE proto_sale_attr;
VACUUM ANALYZE proto_campaign_day;
VACUUM ANALYZE proto_account_day;
"""

CUSTOMERS = f"""SELECT count(DISTINCT lead_id) FILTER (WHERE closed_at >= %(cur)s) FROM proto_sale_attr
  WHERE account_id = %(a)s AND status = 'completed' AND lead_source IN {META} AND closed_at >= %(start)s AND closed_at < %(end)s"""
READS = {
    "stats": [  # the window and its previous period in one pass each
        """SELECT currency, sum(spend) FILTER (WHERE day >= %(since)s), sum(spend) FILTER (WHERE day < %(since)s),
                  sum(leads) FILTER (WHERE day >= %(since)s), sum(leads) FILTER (WHERE day < %(since)s),
                  sum(revenue) FILTER (WHERE day >= %(since)s), sum(revenue) FILTER (WHERE day < %(since)s)
           FROM proto_account_day WHERE account_id = %(a)s AND day BETWEEN %(psince)s AND %(until)s GROUP BY 1""",
        CUSTOMERS,
    ],
    "roi / campaigns": [
        """SELECT meta_campaign_id, currency, sum(spend), sum(impressions), sum(clicks), sum(leads), sum(opportunities), sum(revenue)
           FROM proto_campaign_day WHERE account_id = %(a)s AND day BETWEEN %(since)s AND %(until)s GROUP BY 1, 2""",
        f"""SELECT meta_campaign_id, count(DISTINCT lead_id) FROM proto_sale_attr WHERE account_id = %(a)s AND status = 'completed'
            AND lead_source IN {META} AND closed_at >= %(cur)s AND closed_at < %(end)s GROUP BY 1""",
    ],
    "timeseries": [
        """SELECT day, currency, sum(spend), sum(leads), sum(opportunities), sum(revenue)
           FROM proto_account_day WHERE account_id = %(a)s AND day BETWEEN %(since)s AND %(until)s GROUP BY 1, 2""",
    ],
}


def main() -> None:
    url = os.environ.get("DATABASE_URL", DEFAULT_URL)
    with psycopg.connect(url, autocommit=True) as conn:
        account_id, tz_name = conn.execute("SELECT id, timezone FROM crm_marketing_account WHERE slug = 'bench'").fetchone()
        started = time.perf_counter()
        for statement in filter(str.strip, BUILD.split(";\n")):
            conn.execute(statement)
        sizes = conn.execute("SELECT (SELECT count(*) FROM proto_campaign_day), (SELECT count(*) FROM proto_account_day)").fetchone()
        print(f"built proto_campaign_day ({sizes[0]:,} rows) and proto_account_day ({sizes[1]:,} rows) in {time.perf_counter() - started:.1f} s")
        tz = ZoneInfo(tz_name)
        today = datetime.now(tz).date()
        first = conn.execute("SELECT min(day) FROM proto_account_day WHERE account_id = %s", (account_id,)).fetchone()[0]
        print(f"{'read':<18}{'range':<10}{'SQL median ms':>14}")
        try:
            for name, sqls in READS.items():
                for label, since in (("30d", today - timedelta(days=29)), ("90d", today - timedelta(days=89)), ("lifetime", first)):
                    days = (today - since).days + 1
                    midnight = lambda d: datetime.combine(d, datetime.min.time(), tz)  # noqa: E731
                    params = {"a": account_id, "since": since, "until": today, "psince": since - timedelta(days=days),
                              "cur": midnight(since), "start": midnight(since - timedelta(days=days)), "end": midnight(today + timedelta(days=1))}
                    timings = []
                    for _ in range(10):
                        t = time.perf_counter()
                        for sql in sqls:
                            conn.execute(sql, params).fetchall()
                        timings.append((time.perf_counter() - t) * 1000)
                    print(f"{name:<18}{label:<10}{statistics.median(timings):>14.1f}", flush=True)
        finally:
            conn.execute("DROP TABLE IF EXISTS proto_campaign_day, proto_account_day, proto_sale_attr")


if __name__ == "__main__":
    main()
