"""meta_oauth 0005: the WhatsApp ids a connection held become WhatsAppChannel rows before the fields go."""
from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("meta_oauth", "0004_admin_labels")]
AFTER = [("meta_oauth", "0005_move_whatsapp_ids_to_channels")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_stored_whatsapp_ids_become_one_selected_channel_per_account_and_a_taken_number_stays_with_its_first_owner():
    old = migrate(BEFORE)
    Account = old.get_model("crm_marketing", "Account")
    MetaConnection = old.get_model("meta_oauth", "MetaConnection")
    acme = Account.objects.create(name="Acme", slug="acme", currency="USD", timezone="UTC")
    globex = Account.objects.create(name="Globex", slug="globex", currency="EUR", timezone="UTC")
    initech = Account.objects.create(name="Initech", slug="initech", currency="USD", timezone="UTC")
    MetaConnection.objects.create(account=acme, status="connected", token_ciphertext="x", waba_id="1200001", phone_number_id="1300001")
    MetaConnection.objects.create(account=globex, status="connected", token_ciphertext="x", waba_id="1200001", phone_number_id="1300001")
    MetaConnection.objects.create(account=initech, status="disconnected", token_ciphertext="")
    try:
        new = migrate(AFTER)
        channels = new.get_model("meta_oauth", "WhatsAppChannel").objects.values_list(
            "account__slug", "meta_waba_id", "meta_phone_number_id", "is_selected")
        fields = {f.name for f in new.get_model("meta_oauth", "MetaConnection")._meta.get_fields()}

        assert list(channels) == [("acme", "1200001", "1300001", True)]
        assert not {"waba_id", "phone_number_id"} & fields
    finally:
        migrate(AFTER)
