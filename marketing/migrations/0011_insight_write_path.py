"""DailyInsight made cheap to write in bulk (bench/README.md, "Reads at ten times the scale"): the two foreign keys
Django checked per inserted row (deferred, at commit) become one composite key that also says an insight's account
is its ad account's; the two single-column indexes Django added for them go (the unique key and
insight_account_date start with those columns), and so does (account, campaign, date), which no read uses since the
rollups; pages are half filled so a restated row is updated in place.
The composite key and the fillfactor are PostgreSQL's (SQLite keeps the ad account reference unchecked)."""
import django.db.models.deletion
from django.db import migrations, models

FOREIGN_KEY = "insight_ad_account_of_account"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f"ALTER TABLE marketing_dailyinsight ADD CONSTRAINT {FOREIGN_KEY} FOREIGN KEY (account_id, ad_account_id) "
        f"REFERENCES marketing_adaccount (account_id, id) DEFERRABLE INITIALLY DEFERRED")
    schema_editor.execute("ALTER TABLE marketing_dailyinsight SET (fillfactor = 50)")


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"ALTER TABLE marketing_dailyinsight DROP CONSTRAINT IF EXISTS {FOREIGN_KEY}")
    schema_editor.execute("ALTER TABLE marketing_dailyinsight RESET (fillfactor)")


class Migration(migrations.Migration):

    dependencies = [
        ('crm_marketing', '0006_choice_constraints'),
        ('marketing', '0010_coarse_rollups'),
    ]

    operations = [
        migrations.AlterField(
            model_name='dailyinsight',
            name='account',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='crm_marketing.account'),
        ),
        migrations.AlterField(
            model_name='dailyinsight',
            name='ad_account',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='insights', to='marketing.adaccount'),
        ),
        migrations.RemoveIndex(
            model_name='dailyinsight',
            name='insight_account_campaign_date',
        ),
        migrations.AddConstraint(
            model_name='adaccount',
            constraint=models.UniqueConstraint(fields=('account', 'id'), name='adaccount_account_id'),
        ),
        migrations.RunPython(forwards, backwards),
    ]
