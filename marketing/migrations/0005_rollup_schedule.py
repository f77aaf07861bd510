"""Upsert, by name, the django-q2 Schedules of the ROI rollup:

- nightly, re-derive every account's last 35 days (marketing.services.rollups.rebuild_recent): the
  safety net under the incremental refreshes (a write that bypassed the models, a failed refresh);
- once, as soon as a worker runs, build the whole history of a database migrated with data already in
  it (the table starts empty; the one-off schedule deletes itself after running)."""
import datetime as dt

from django.db import migrations
from django.utils import timezone

SCHEDULE_NAME = "marketing.rebuild_recent_roi_rollups"
BACKFILL_NAME = "marketing.backfill_roi_rollups"


def upsert_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    tomorrow = timezone.now().date() + dt.timedelta(days=1)
    Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={"func": "marketing.tasks.rebuild_recent_roi_rollups", "schedule_type": "D", "repeats": -1,
                  # 06:30 UTC: night in the Americas and early morning in Europe.
                  "next_run": dt.datetime.combine(tomorrow, dt.time(6, 30), tzinfo=dt.timezone.utc)},
    )
    Schedule.objects.update_or_create(
        name=BACKFILL_NAME,
        defaults={"func": "marketing.tasks.rebuild_all_roi_rollups", "schedule_type": "O", "repeats": -1,
                  "next_run": timezone.now()},
    )


def drop_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name__in=[SCHEDULE_NAME, BACKFILL_NAME]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("marketing", "0004_roi_rollups"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(upsert_schedule, drop_schedule)]
