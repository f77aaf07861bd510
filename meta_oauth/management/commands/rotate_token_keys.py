"""Re-encrypt every stored Meta token with the newest key of META_TOKEN_KEYS.

Rotation: put the new key first in META_TOKEN_KEYS (old keys after it), deploy, run this command,
then drop the old keys. Tokens are never printed.
"""
from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from crm_marketing.crypto import TokenDecryptionError, check_token_keys, rotate_ciphertext
from crm_marketing.tenancy import Account
from meta_oauth.models import MetaConnection


class Command(BaseCommand):
    help = "Re-encrypt every Meta token with the newest key in META_TOKEN_KEYS."

    def add_arguments(self, parser):
        parser.add_argument("--account", help="only this account (slug)")

    def handle(self, *args, account=None, **options):
        try:
            check_token_keys()
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from None
        ids = MetaConnection.objects.exclude(token_ciphertext="")
        if account:
            if not Account.objects.filter(slug=account).exists():
                raise CommandError(f"No account with slug {account!r}.")
            ids = ids.filter(account__slug=account)
        rotated, unreadable = 0, []
        for pk in ids.values_list("pk", flat=True).order_by("pk"):
            with transaction.atomic():
                connection = MetaConnection.objects.select_for_update().select_related("account").get(pk=pk)
                if not connection.token_ciphertext:
                    continue
                try:
                    connection.token_ciphertext = rotate_ciphertext(connection.token_ciphertext)
                except TokenDecryptionError:
                    unreadable.append(connection.account.slug)
                    continue
                connection.save(update_fields=["token_ciphertext", "updated_at"])
                rotated += 1
        self.stdout.write(f"Re-encrypted {rotated} Meta token(s) with the newest key.")
        if unreadable:
            raise CommandError(f"{len(unreadable)} token(s) match no key in META_TOKEN_KEYS (accounts: "
                               f"{', '.join(unreadable)}); keep the old key until they are reconnected.")
