"""Re-encrypt every stored Meta token (user tokens and page tokens) with the newest key of META_TOKEN_KEYS.

Rotation: put the new key first in META_TOKEN_KEYS (old keys after it), deploy, run this command,
then drop the old keys. Tokens are never printed.
"""
from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from crm_marketing.crypto import TokenDecryptionError, check_token_keys, rotate_ciphertext
from crm_marketing.tenancy import Account
from meta_oauth.models import MetaConnection, MetaPage

# model -> the field holding its Fernet ciphertext
ENCRYPTED = ((MetaConnection, "token_ciphertext"), (MetaPage, "page_token_ciphertext"))


class Command(BaseCommand):
    help = "Re-encrypt every Meta token (user and page tokens) with the newest key in META_TOKEN_KEYS."

    def add_arguments(self, parser):
        parser.add_argument("--account", help="only this account (slug)")

    def handle(self, *args, account=None, **options):
        try:
            check_token_keys()
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from None
        if account and not Account.objects.filter(slug=account).exists():
            raise CommandError(f"No account with slug {account!r}.")
        rotated, unreadable = 0, []
        for model, field in ENCRYPTED:
            rows = model.objects.exclude(**{field: ""})
            if account:
                rows = rows.filter(account__slug=account)
            for pk in rows.values_list("pk", flat=True).order_by("pk"):
                with transaction.atomic():
                    row = model.objects.select_for_update().select_related("account").get(pk=pk)
                    if not getattr(row, field):
                        continue
                    try:
                        setattr(row, field, rotate_ciphertext(getattr(row, field)))
                    except TokenDecryptionError:
                        unreadable.append(row.account.slug)
                        continue
                    row.save(update_fields=[field, "updated_at"])
                    rotated += 1
        self.stdout.write(f"Re-encrypted {rotated} Meta token(s) with the newest key.")
        if unreadable:
            raise CommandError(f"{len(unreadable)} token(s) match no key in META_TOKEN_KEYS (accounts: "
                               f"{', '.join(unreadable)}); keep the old key until they are reconnected.")
