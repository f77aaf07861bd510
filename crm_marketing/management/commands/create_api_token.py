"""manage.py create_api_token --user alice: print a DRF token for scripts (created once, reused)."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token

from crm_marketing.audit import record_event


class Command(BaseCommand):
    help = "Create (or show) the API token of a user, for scripts calling /crm/ with 'Authorization: Token <key>'."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="username")
        parser.add_argument("--rotate", action="store_true", help="replace an existing token with a new one")

    def handle(self, *args, user, rotate, **options):
        account_user = get_user_model().objects.filter(username=user).first()
        if account_user is None:
            raise CommandError(f"No user named {user!r}.")
        if rotate:
            Token.objects.filter(user=account_user).delete()
        token, created = Token.objects.get_or_create(user=account_user)
        if created:
            record_event("api_token.create", actor=account_user, target=account_user)
        self.stdout.write(token.key)
