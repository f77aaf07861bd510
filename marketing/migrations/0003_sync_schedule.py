"""Upsert the django-q2 Schedule that keeps ad accounts synced, by name.

It runs every 15 minutes and queues a sync for each ad account whose last run is older than
META_SYNC_INTERVAL_HOURS (read when it runs, so changing the setting needs no new migration) or
whose Meta parking just ended.
"""
from django.db import migrations

SCHEDULE_NAME = "marketing.sync_due_ad_accounts"


def upsert_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={"func": "marketing.tasks.sync_due_ad_accounts", "schedule_type": "I", "minutes": 15, "repeats": -1},
    )


def drop_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("marketing", "0002_sync_fields"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(upsert_schedule, drop_schedule)]
