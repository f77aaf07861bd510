"""Upsert, by name, the django-q2 Schedule that syncs every connected account's WhatsApp templates
every 6 hours (automation.tasks.sync_all_templates); webhooks keep them current in between."""
from django.db import migrations
from django.utils import timezone

SCHEDULE_NAME = "automation.sync_all_templates"


def upsert_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={"func": "automation.tasks.sync_all_templates", "schedule_type": "I", "minutes": 6 * 60, "repeats": -1,
                  "next_run": timezone.now()},
    )


def drop_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("automation", "0004_engine_schedules"), ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more")]

    operations = [migrations.RunPython(upsert_schedule, drop_schedule)]
