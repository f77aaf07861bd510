"""manage.py seed_demo: load the demo accounts, users and CRM data (safe to run again)."""
from django.core.management.base import BaseCommand

from crm_marketing.demo import DEMO_ACCOUNTS, DEMO_PASSWORD, seed_demo


class Command(BaseCommand):
    help = "Create the demo accounts (acme, globex), a user per role and a few hundred leads. Idempotent."

    def handle(self, *args, **options):
        created = seed_demo()
        summary = ", ".join(f"{slug}: {count} new leads" for slug, count in created.items())
        self.stdout.write(f"Demo data ready ({summary}).")
        self.stdout.write(f"Demo logins (password {DEMO_PASSWORD}):")
        for spec in DEMO_ACCOUNTS:
            users = ", ".join(f"{username} ({role})" for username, role in spec.users)
            self.stdout.write(f"  {spec.name} [{spec.slug}]: {users}")
