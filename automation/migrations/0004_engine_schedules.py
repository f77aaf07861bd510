"""Upsert the engine's django-q2 schedules by name: due sends every minute, the no_reply scan every
15 minutes, reconciliation of unconfirmed sends hourly."""
from django.db import migrations

SCHEDULES = {
    "automation.dispatch_due_sends": ("automation.tasks.dispatch_due_sends", 1),
    "automation.plan_no_reply_sends": ("automation.tasks.plan_no_reply_sends", 15),
    "automation.reconcile_sends": ("automation.tasks.reconcile_sends", 60),
}


def upsert_schedules(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for name, (func, minutes) in SCHEDULES.items():
        Schedule.objects.update_or_create(
            name=name, defaults={"func": func, "schedule_type": "I", "minutes": minutes, "repeats": -1})


def drop_schedules(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name__in=list(SCHEDULES)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("automation", "0003_engine_counters_limiter_heartbeat"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(upsert_schedules, drop_schedules)]
