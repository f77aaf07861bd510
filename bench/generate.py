"""Build a large account on PostgreSQL for the stats benchmark (bench/stats.py).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crm_bench .venv/bin/python bench/generate.py [--scale 0.1|1|10]

The database named in DATABASE_URL (default crm_bench; its name must contain "bench") is DROPPED
and recreated, migrated, then filled with COPY (psycopg 3 ``cursor.copy``): at scale 1, one
account with 1,000,000 leads, 150,000 opportunities, 50,000 sales, 500 campaigns, 2,000 ads and
730 days of ad-level daily insights (~1.4M rows; each ad skips some days); ``--scale 10`` is ten
times each (14M insight rows). 10% of the campaigns run in a BRL ad account converted with an
ExchangeRate, 3% of the sales are in BRL and 5% are refunded. A small second account ("noise")
shares the tables so scoping is exercised. Sales carry their lead's attribution
(Sale.lead_source/meta_campaign_id).

Time flows as in a live account: leads arrive evenly until now (none in the rest of today), an
opportunity is opened 0-14 days after its lead and closed 0-30 days later, and only what has
happened by now exists: opportunities are spread evenly over the days like the leads, a deal that
would close after now is still open, and today's insights are the share of the day gone so far.
So today looks like any other day so far (no pile of "future" rows clamped onto now).

The tables' secondary indexes and foreign keys are dropped during the COPY and recreated after it
(what a bulk load does; PostgreSQL builds an index in one sort, and checks a foreign key in one
join instead of once per row). After the load, the ROI rollups are built with the same service
`manage.py rebuild_roi_rollups` runs. Prints counts and elapsed times, and the database's size.
"""
from __future__ import annotations

import argparse
import bisect
import os
import random
import sys
import time
from datetime import datetime, timedelta, timezone as dt_timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/crm_bench"
DAYS = 730
TZ_OFFSET = timedelta(hours=-3)  # the bench account's timezone, America/Argentina/Buenos_Aires


def recreate_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if "bench" not in name:
        sys.exit(f"Refusing to drop {name!r}: the benchmark database name must contain 'bench'.")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm_marketing.settings")
    import django

    django.setup()


def copy_rows(model, columns: list[str], rows) -> int:
    """COPY rows (tuples in ``columns`` order; explicit ids) into the model's table."""
    from django.db import connection

    table = model._meta.db_table
    count = 0
    with connection.cursor() as cursor:
        raw = cursor.cursor  # the psycopg 3 cursor under Django's wrapper
        with raw.copy(f'COPY "{table}" ({", ".join(columns)}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
    return count


class BulkLoad:
    """Drop the tables' secondary indexes and foreign keys for a COPY and put them back after it."""

    def __init__(self, models):
        from django.db import connection

        self.tables = [model._meta.db_table for model in models]
        self.indexes: list[tuple[str, str]] = []
        self.foreign_keys: list[tuple[str, str, str]] = []
        with connection.cursor() as cursor:
            for table in self.tables:
                cursor.execute(
                    "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
                    "WHERE i.indrelid = %s::regclass AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
                    [f'"{table}"'])
                self.indexes += cursor.fetchall()
                cursor.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'",
                               [f'"{table}"'])
                self.foreign_keys += [(table, name, definition) for name, definition in cursor.fetchall()]

    def __enter__(self):
        from django.db import connection

        with connection.cursor() as cursor:
            for table, name, _ in self.foreign_keys:
                cursor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
            for name, _ in self.indexes:
                cursor.execute(f"DROP INDEX {name}")
        return self

    def __exit__(self, *exc_info):
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SET maintenance_work_mem = '1GB'")
            for _, definition in self.indexes:
                cursor.execute(definition)
            for table, name, definition in self.foreign_keys:
                cursor.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')


def reset_sequence(model) -> None:
    from django.db import connection

    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), COALESCE(MAX(id), 1)) FROM \"{table}\"")


class Clock:
    def __init__(self):
        self.start = time.perf_counter()
        self.last = self.start

    def lap(self, label: str, count: int | None = None) -> None:
        now = time.perf_counter()
        figure = f"{count:>10,}" if count is not None else " " * 10
        print(f"{label:<22}{figure}  {now - self.last:7.1f} s", flush=True)
        self.last = now


def build(scale: float, seed: int) -> None:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from crm_marketing.models import Account, Lead, Membership, Opportunity, Sale
    from marketing.models import Ad, AdAccount, AdSet, Campaign, DailyInsight, ExchangeRate
    from meta_oauth.models import MetaConnection

    rng = random.Random(seed)
    clock = Clock()
    call_command("migrate", verbosity=0, interactive=False)
    clock.lap("migrate")

    n_leads = int(1_000_000 * scale)
    n_opps = int(150_000 * scale)
    n_sales = int(50_000 * scale)
    n_campaigns = max(3, int(500 * scale))
    ads_per_campaign = 4
    now = datetime.now(dt_timezone.utc).replace(microsecond=0)
    today = (now + TZ_OFFSET).date()
    first_day = today - timedelta(days=DAYS - 1)
    start_utc = datetime.combine(first_day, datetime.min.time(), tzinfo=dt_timezone.utc) - TZ_OFFSET
    span_seconds = int((now - start_utc).total_seconds())  # up to now: nothing has happened later today
    today_share = (now - (datetime.combine(today, datetime.min.time(), tzinfo=dt_timezone.utc) - TZ_OFFSET)) / timedelta(days=1)

    account = Account.objects.create(name="Bench", slug="bench", currency="USD", timezone="America/Argentina/Buenos_Aires")
    noise = Account.objects.create(name="Noise", slug="noise", currency="USD", timezone="UTC")
    user = get_user_model().objects.create_user("bench", password="pw-bench")
    Membership.objects.create(user=user, account=account, role="ceo")
    connection_row = MetaConnection(account=account, meta_user_id="1", meta_user_name="Bench")
    connection_row.set_token("bench-token")
    connection_row.save()
    usd = AdAccount.objects.create(account=account, meta_ad_account_id="act_100", name="Bench USD", currency="USD",
                                   timezone_name="America/Argentina/Buenos_Aires", is_selected=True, last_synced_at=now)
    brl = AdAccount.objects.create(account=account, meta_ad_account_id="act_200", name="Bench BRL", currency="BRL",
                                   timezone_name="America/Sao_Paulo", is_selected=False, last_synced_at=now)
    ExchangeRate.objects.create(account=account, from_currency="BRL", to_currency="USD", rate="0.20000000")
    noise_ad_account = AdAccount.objects.create(account=noise, meta_ad_account_id="act_900", name="Noise", currency="USD")

    # Campaigns, ad sets (2 per campaign) and ads (2 per ad set), in bulk.
    campaign_rows, adset_rows, ad_rows = [], [], []
    ads = []  # (meta_ad_id, meta_adset_id, meta_campaign_id, ad_account, currency)
    for c in range(n_campaigns):
        ad_account = brl if c % 10 == 9 else usd
        meta_campaign_id = str(120_000_000_000 + c)
        campaign = Campaign(
            account=account, ad_account=ad_account, meta_campaign_id=meta_campaign_id, name=f"Campaign {c:04d}",
            status=rng.choice(["ACTIVE", "ACTIVE", "PAUSED", "ARCHIVED"]), objective="OUTCOME_LEADS",
            daily_budget=rng.randrange(2_000, 50_000), start_time=now - timedelta(days=DAYS),
        )
        campaign_rows.append(campaign)
        for s in range(2):
            meta_adset_id = str(230_000_000_000 + c * 10 + s)
            adset = AdSet(account=account, ad_account=ad_account, campaign=campaign, meta_adset_id=meta_adset_id,
                          meta_campaign_id=meta_campaign_id, name=f"Ad set {c:04d}-{s}", status="ACTIVE")
            adset_rows.append(adset)
            for a in range(ads_per_campaign // 2):
                meta_ad_id = str(340_000_000_000 + c * 100 + s * 10 + a)
                ad_rows.append(Ad(account=account, ad_account=ad_account, campaign=campaign, adset=adset, meta_ad_id=meta_ad_id,
                                  meta_adset_id=meta_adset_id, meta_campaign_id=meta_campaign_id, name=f"Ad {meta_ad_id}",
                                  status="ACTIVE"))
                ads.append((meta_ad_id, meta_adset_id, meta_campaign_id, ad_account, ad_account.currency))
    Campaign.objects.bulk_create(campaign_rows, batch_size=2000)
    for adset in adset_rows:
        adset.campaign_id = adset.campaign.pk
    AdSet.objects.bulk_create(adset_rows, batch_size=2000)
    for ad in ad_rows:
        ad.campaign_id, ad.adset_id = ad.campaign.pk, ad.adset.pk
    Ad.objects.bulk_create(ad_rows, batch_size=2000)
    Campaign.objects.create(account=noise, ad_account=noise_ad_account, meta_campaign_id="999000", name="Noise campaign", status="ACTIVE")
    clock.lap("campaigns + ads", len(campaign_rows))

    # Daily insights: every ad on ~96% of the 730 days; today only the share of the day gone so far.
    def insight_rows():
        insight_id = 0
        for day_index in range(DAYS):
            day = first_day + timedelta(days=day_index)
            share = today_share if day == today else 1.0
            for meta_ad_id, meta_adset_id, meta_campaign_id, ad_account, currency in ads:
                if rng.random() < 0.04:
                    continue
                insight_id += 1
                impressions = int(rng.randrange(200, 5_000) * share)
                clicks = impressions * rng.randrange(5, 40) // 1000
                spend = f"{int(rng.randrange(100, 6_000) * share) / 100:.2f}"
                yield (insight_id, account.pk, ad_account.pk, meta_campaign_id, meta_adset_id, meta_ad_id, day, currency, spend,
                       impressions, clicks, clicks // 2, impressions * 8 // 10, clicks // 20, now)

    with BulkLoad([DailyInsight, Lead, Opportunity, Sale]):
        columns = ["id", "account_id", "ad_account_id", "meta_campaign_id", "meta_adset_id", "meta_ad_id", "date", "currency",
                   "spend", "impressions", "clicks", "link_clicks", "reach", "leads", "synced_at"]
        count = copy_rows(DailyInsight, columns, insight_rows())
        reset_sequence(DailyInsight)
        clock.lap("daily insights", count)

        # Leads: 70% from Meta (45% lead ads, 25% click-to-WhatsApp), evenly from the first day until now,
        # inserted in time order as a live table fills (ids and the heap follow created_at).
        weights = [rng.paretovariate(1.5) for _ in ads]  # some ads bring far more leads
        offsets = sorted(rng.randrange(span_seconds) for _ in range(n_leads))
        picked_ads = rng.choices(ads, weights=weights, k=n_leads)
        lead_is_meta = bytearray(n_leads + 1)
        lead_source = [""] * (n_leads + 1)  # shared str objects: cheap

        def lead_rows():
            for lead_id in range(1, n_leads + 1):
                created = start_utc + timedelta(seconds=offsets[lead_id - 1])
                roll = rng.random()
                if roll < 0.70:
                    source = "meta_lead_ads" if roll < 0.45 else "meta_ctwa"
                    meta_ad_id, meta_adset_id, meta_campaign_id, _, _ = picked_ads[lead_id - 1]
                    lead_is_meta[lead_id] = 1
                else:
                    source = rng.choice(["organic", "manual", "import"])
                    meta_ad_id = meta_adset_id = meta_campaign_id = ""
                lead_source[lead_id] = source
                yield (lead_id, account.pk, f"Lead{lead_id}", "Bench", f"+5491{lead_id:010d}", "", "new", source,
                       meta_campaign_id, meta_adset_id, meta_ad_id, "", "", "", "", "{}", created, created)

        columns = ["id", "account_id", "first_name", "last_name", "phone", "email", "status", "lead_source", "meta_campaign_id",
                   "meta_adset_id", "meta_ad_id", "meta_form_id", "meta_ad_headline", "meta_ad_body", "ctwa_clid", "external_ids",
                   "created_at", "updated_at"]
        count = copy_rows(Lead, columns, lead_rows())
        reset_sequence(Lead)
        clock.lap("leads", count)

        opportunities = plan_opportunities(rng, n_opps, n_sales, offsets, lead_is_meta, span_seconds)

        def opportunity_rows():
            for opp_id, (created, lead_id, stage, closed) in enumerate(opportunities, start=1):
                amount = f"{rng.randrange(10_000, 500_000) / 100:.2f}"
                created_at = start_utc + timedelta(seconds=created)
                closed_at = start_utc + timedelta(seconds=closed) if closed is not None else None
                yield (opp_id, account.pk, lead_id, f"Deal {opp_id}", stage, amount, "USD", created_at, closed_at,
                       closed_at or created_at)

        columns = ["id", "account_id", "lead_id", "title", "stage", "amount", "currency", "created_at", "closed_at", "updated_at"]
        count = copy_rows(Opportunity, columns, opportunity_rows())
        reset_sequence(Opportunity)
        clock.lap("opportunities", count)

        won = sorted((closed, opp_id, lead_id) for opp_id, (_, lead_id, stage, closed) in enumerate(opportunities, start=1)
                     if stage == "won")  # sales in closing order

        def sale_rows():
            for sale_id, (closed, opp_id, lead_id) in enumerate(won, start=1):
                currency = "BRL" if rng.random() < 0.03 else "USD"
                status = "refunded" if rng.random() < 0.05 else "completed"
                amount = f"{rng.randrange(10_000, 500_000) / 100:.2f}"
                campaign = picked_ads[lead_id - 1][2] if lead_is_meta[lead_id] else ""
                closed_at = start_utc + timedelta(seconds=closed)
                yield (sale_id, account.pk, opp_id, lead_id, amount, currency, status, closed_at, closed_at,
                       lead_source[lead_id], campaign)

        columns = ["id", "account_id", "opportunity_id", "lead_id", "amount", "currency", "status", "closed_at", "created_at",
                   "lead_source", "meta_campaign_id"]
        count = copy_rows(Sale, columns, sale_rows())
        reset_sequence(Sale)
        clock.lap("sales", count)
    clock.lap("indexes + foreign keys")

    # A little data in another account, so every read must scope.
    for i in range(50):
        lead = Lead.objects.create(account=noise, first_name=f"Noise{i}", lead_source="meta_lead_ads", meta_campaign_id="999000")
        Sale.objects.create(account=noise, lead=lead, amount="10.00", currency="USD")

    connection.close()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    clock.lap("vacuum analyze")
    build_rollups(account, clock)
    print(f"{'total':<22}{'':>10}  {time.perf_counter() - clock.start:7.1f} s")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
        size = cursor.fetchone()[0]
    print(f"account=bench user=bench leads={Lead.objects.filter(account=account).count():,} "
          f"opportunities={Opportunity.objects.filter(account=account).count():,} sales={Sale.objects.filter(account=account).count():,} "
          f"campaigns={Campaign.objects.filter(account=account).count():,} ads={Ad.objects.filter(account=account).count():,} "
          f"insights={DailyInsight.objects.filter(account=account).count():,} database size={size}")


def plan_opportunities(rng: random.Random, n_opps: int, n_sales: int, lead_offsets: list[int], lead_is_meta: bytearray,
                       span_seconds: int) -> list[tuple[int, int, str, int | None]]:
    """(created, lead_id, stage, closed) per opportunity in creation order, times in seconds from the first day.

    Opportunities are opened evenly over the span (as leads arrive), each on a lead that arrived in the 14 days
    before (85% Meta leads, at most one opportunity per lead), and close 0-30 days later; only deals that have
    closed by now are won (n_sales of them) or lost (a quarter of all), the others are still open."""
    meta_ids = [i for i in range(1, len(lead_is_meta)) if lead_is_meta[i]]
    other_ids = [i for i in range(1, len(lead_is_meta)) if not lead_is_meta[i]]
    meta_offsets = [lead_offsets[i - 1] for i in meta_ids]
    other_offsets = [lead_offsets[i - 1] for i in other_ids]
    used: set[int] = set()
    planned = []
    for created in sorted(rng.randrange(span_seconds) for _ in range(n_opps)):
        ids, offsets = (meta_ids, meta_offsets) if rng.random() < 0.85 else (other_ids, other_offsets)
        low, high = bisect.bisect_left(offsets, created - 14 * 86_400), bisect.bisect_right(offsets, created)
        for _ in range(20):  # a free lead of those 14 days (fails only in the span's first minutes)
            if high > low and (lead_id := ids[rng.randrange(low, high)]) not in used:
                break
        else:
            lead_id = next(i for i in ids if i not in used)
            created = max(created, lead_offsets[lead_id - 1])
        used.add(lead_id)
        planned.append([created, lead_id, rng.choice(["new", "qualified", "proposal", "negotiation"]), None])
    planned.sort()
    for row in planned:
        row[3] = row[0] + rng.randrange(30 * 86_400)
    closed_by_now = [row for row in planned if row[3] < span_seconds]
    for index, row in enumerate(rng.sample(closed_by_now, n_sales + n_opps // 4)):
        row[2] = "won" if index < n_sales else "lost"
    for row in planned:
        if row[2] not in ("won", "lost"):
            row[3] = None
    return [tuple(row) for row in planned]


def build_rollups(account, clock: Clock) -> None:
    """COPY sent no signals: derive the rollups as a backfill would, then vacuum them for index-only scans."""
    from django.db import connection

    from marketing.models import AccountDay, CampaignDay, CampaignToDate, CampaignTotal, RepeatSale
    from marketing.services import rollups

    result = rollups.rebuild(account)
    clock.lap("rollups (rebuild)", result.rows_written)
    with connection.cursor() as cursor:
        for model in (CampaignDay, AccountDay, CampaignToDate, CampaignTotal, RepeatSale):
            cursor.execute(f'VACUUM ANALYZE "{model._meta.db_table}"')  # index-only scans need the visibility map
    clock.lap("vacuum rollups")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full size (default 1.0)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", DEFAULT_URL)
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit("bench/generate.py needs PostgreSQL: set DATABASE_URL=postgres://…/crm_bench")
    recreate_database(url)
    setup_django(url)
    build(args.scale, args.seed)


if __name__ == "__main__":
    main()
