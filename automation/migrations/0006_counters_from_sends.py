"""Rule and template counters are counted from their sends (automation.services.counters): the
columns go, and with them the engine's updates of them."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('automation', '0005_template_sync_schedule'),
    ]

    operations = [
        migrations.RemoveField(
            model_name='automationrule',
            name='delivered_count',
        ),
        migrations.RemoveField(
            model_name='automationrule',
            name='failed_count',
        ),
        migrations.RemoveField(
            model_name='automationrule',
            name='read_count',
        ),
        migrations.RemoveField(
            model_name='automationrule',
            name='sent_count',
        ),
        migrations.RemoveField(
            model_name='messagetemplate',
            name='delivered_count',
        ),
        migrations.RemoveField(
            model_name='messagetemplate',
            name='failed_count',
        ),
        migrations.RemoveField(
            model_name='messagetemplate',
            name='read_count',
        ),
        migrations.RemoveField(
            model_name='messagetemplate',
            name='sent_count',
        ),
    ]
