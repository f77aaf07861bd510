"""`python -m crm_marketing.sandbox --port 8765`: the sandbox without Django."""
from __future__ import annotations

import argparse

from .sandbox import MetaSandbox


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the Meta Graph API sandbox.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--ads", type=int, default=None)
    parser.add_argument("--days", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--app-id", default="sandbox-app")
    parser.add_argument("--app-secret", default="sandbox-secret")
    parser.add_argument("--webhook-url", default=None, help="POST emitted webhooks here (default: queue them)")
    args = parser.parse_args()
    sandbox = MetaSandbox(host=args.host, port=args.port, app_id=args.app_id, app_secret=args.app_secret,
                          ads=args.ads, days=args.days, seed=args.seed, webhook_url=args.webhook_url)
    sandbox.serve_forever(ready=lambda sb: print(f"Meta sandbox on {sb.base_url} (Ctrl-C stops)", flush=True))


if __name__ == "__main__":
    main()
