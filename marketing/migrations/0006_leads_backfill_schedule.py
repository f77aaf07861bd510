"""Upsert, by name, the nightly django-q2 Schedule that records Lead Ads leads no webhook brought
(marketing.tasks.backfill_recent_leads: the last week of every connected account's seen forms)."""
import datetime as dt

from django.db import migrations
from django.utils import timezone

SCHEDULE_NAME = "marketing.backfill_recent_leads"


def upsert_schedule(apps, schema_editor):
    tomorrow = timezone.now().date() + dt.timedelta(days=1)
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={"func": "marketing.tasks.backfill_recent_leads", "schedule_type": "D", "repeats": -1,
                  "next_run": dt.datetime.combine(tomorrow, dt.time(7, 0), tzinfo=dt.timezone.utc)},
    )


def drop_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("marketing", "0005_rollup_schedule")]

    operations = [migrations.RunPython(upsert_schedule, drop_schedule)]
