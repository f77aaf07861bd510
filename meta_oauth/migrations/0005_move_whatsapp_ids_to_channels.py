"""MetaConnection.waba_id / phone_number_id become WhatsAppChannel rows, then the fields go.

A phone number id already stored for another account stays with that account (the first one by
connection id): webhooks must find exactly one account for it."""

from django.db import migrations


def copy_ids_to_channels(apps, schema_editor):
    MetaConnection = apps.get_model("meta_oauth", "MetaConnection")
    WhatsAppChannel = apps.get_model("meta_oauth", "WhatsAppChannel")
    for connection in MetaConnection.objects.exclude(phone_number_id="").order_by("pk"):
        if WhatsAppChannel.objects.filter(meta_phone_number_id=connection.phone_number_id).exists():
            continue
        selected = not WhatsAppChannel.objects.filter(account_id=connection.account_id, is_selected=True).exists()
        WhatsAppChannel.objects.create(account_id=connection.account_id, meta_waba_id=connection.waba_id,
                                       meta_phone_number_id=connection.phone_number_id, is_selected=selected)


def copy_channels_back(apps, schema_editor):
    MetaConnection = apps.get_model("meta_oauth", "MetaConnection")
    WhatsAppChannel = apps.get_model("meta_oauth", "WhatsAppChannel")
    for channel in WhatsAppChannel.objects.filter(is_selected=True):
        MetaConnection.objects.filter(account_id=channel.account_id).update(
            waba_id=channel.meta_waba_id, phone_number_id=channel.meta_phone_number_id)


class Migration(migrations.Migration):

    dependencies = [
        ("meta_oauth", "0004_admin_labels"),
    ]

    operations = [
        migrations.RunPython(copy_ids_to_channels, copy_channels_back),
        migrations.RemoveField(model_name="metaconnection", name="phone_number_id"),
        migrations.RemoveField(model_name="metaconnection", name="waba_id"),
    ]
