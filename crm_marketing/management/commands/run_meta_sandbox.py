"""Run the Meta Graph API sandbox in the foreground (for the demo and benchmarks)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from crm_marketing.sandbox import MetaSandbox


class Command(BaseCommand):
    help = "Run the Meta sandbox (a fake Graph API on loopback) until Ctrl-C."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument("--ads", type=int, default=None, help="generate N ads instead of the fixture's")
        parser.add_argument("--days", type=int, default=None, help="days of generated insights (default 90)")
        parser.add_argument("--seed", type=int, default=None)
        parser.add_argument("--fixture", type=Path, default=None, help="JSON seed (default: the bundled one)")
        parser.add_argument("--webhook-url", default=None,
                            help="POST status / preference / template webhooks here, signed "
                                 "(e.g. http://127.0.0.1:8000/webhooks/meta); default: queue them")

    def handle(self, *args: Any, **options: Any) -> None:
        fixture = json.loads(options["fixture"].read_text(encoding="utf-8")) if options["fixture"] else None
        sandbox = MetaSandbox(fixture, host=options["host"], port=options["port"],
                              app_id=getattr(settings, "META_APP_ID", "sandbox-app"),
                              app_secret=getattr(settings, "META_APP_SECRET", "sandbox-secret"),
                              ads=options["ads"], days=options["days"], seed=options["seed"],
                              webhook_url=options["webhook_url"])
        sandbox.serve_forever(ready=lambda sb: self._announce(sb.base_url))
        self.stdout.write("Meta sandbox stopped")

    def _announce(self, base_url: str) -> None:
        self.stdout.write(f"Meta sandbox on {base_url} (Ctrl-C stops)")
        self.stdout.flush()
