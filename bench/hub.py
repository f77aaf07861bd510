"""Time the Marketing Hub in headless Chromium against the large bench account.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crm_bench .venv/bin/python bench/generate.py   # once
    (cd frontend && npm ci && npm run build)                                                         # once
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crm_bench .venv/bin/python bench/hub.py [--loads 10]

Starts `manage.py runserver --noreload` on a free port against DATABASE_URL (or uses --base-url),
signs in as the bench user once, warms the server with two loads, then loads /hub/marketing
--loads times, each in a fresh browser context (empty browser cache, the session cookie only), and
measures the time from navigation start until the seven KPI cards show their figures and the
campaign table has rows. Prints the median, min and max, the JavaScript and CSS the page loaded
(raw and gzip level 6, as a server would send it), and the machine's load average.
"""
from __future__ import annotations

import argparse
import gzip
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import free_port, host  # noqa: E402
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
READY = """() => document.querySelectorAll('[data-testid="marketingperformancecard-container"] .kpi-value').length === 7
  && document.querySelectorAll('#campaign-table tbody tr').length > 0"""



def start_server(port: int) -> subprocess.Popen:
    env = {"STATS_CACHE_SECONDS": "0", **os.environ, "DJANGO_SETTINGS_MODULE": "crm_marketing.settings"}  # every load reads the rollup
    server = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "runserver", f"127.0.0.1:{port}", "--noreload"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=2)
            return server
        except OSError:
            time.sleep(0.3)
    server.terminate()
    sys.exit("runserver did not answer within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", type=int, default=10)
    parser.add_argument("--base-url", help="an already running server (default: start runserver on DATABASE_URL)")
    parser.add_argument("--username", default="bench")
    parser.add_argument("--password", default="pw-bench")
    parser.add_argument("--path", default="/hub/marketing")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    if not (ROOT / "static" / "hub" / ".vite" / "manifest.json").exists():
        sys.exit("The hub is not built: cd frontend && npm ci && npm run build")

    from playwright.sync_api import sync_playwright

    server = None
    base = args.base_url
    if not base:
        port = free_port()
        server = start_server(port)
        base = f"http://127.0.0.1:{port}"
    load_before, machine = os.getloadavg(), host()  # the calibration before the loads
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS)
            login = browser.new_context(base_url=base)
            page = login.new_page()
            page.goto("/accounts/login/")
            page.fill("#id_username", args.username)
            page.fill("#id_password", args.password)
            with page.expect_navigation():
                page.locator("form [type=submit]").click()
            state = login.storage_state()
            login.close()

            times, timelines, assets = [], [], {}
            for number in range(args.loads + 2):  # two warm-up loads, not counted
                context = browser.new_context(base_url=base, storage_state=state, viewport={"width": 1360, "height": 900})
                page = context.new_page()
                loaded: dict[str, bytes] = {}

                def keep(response, loaded=loaded):
                    kind = response.request.resource_type
                    if kind in ("script", "stylesheet") and response.ok:
                        loaded[response.url] = response.body()

                page.on("response", keep)
                page.goto(args.path, wait_until="commit")
                page.wait_for_function(READY, timeout=60_000, polling="raf")
                elapsed = page.evaluate("performance.now()") / 1000
                timeline = page.evaluate("""() => [['document', performance.getEntriesByType('navigation')[0].responseEnd],
                  ...performance.getEntriesByType('resource').map(e => [e.name.replace(location.origin, ''), e.responseEnd])]""")
                try:  # the lazy chart chunk belongs to the first page's bytes too
                    page.wait_for_selector(".chart canvas", timeout=30_000)
                except Exception:
                    pass
                page.wait_for_load_state("networkidle")
                if number >= 2:
                    times.append(elapsed)
                    timelines.append((elapsed, timeline))
                    assets = dict(loaded)
                context.close()
            browser.close()
    finally:
        if server is not None:
            os.killpg(server.pid, 15)
            server.wait(timeout=10)
    load_after = os.getloadavg()

    raw = sum(len(body) for body in assets.values())
    gzipped = sum(len(gzip.compress(body, compresslevel=6)) for body in assets.values())
    print(f"{args.path}: KPI cards and campaign table show data after (s, {len(times)} loads, fresh browser cache, warm server):")
    print(f"  median {statistics.median(times):.3f}  min {min(times):.3f}  max {max(times):.3f}")
    print(f"JS+CSS of the first page: {len(assets)} files, {raw / 1024:.1f} KB raw, {gzipped / 1024:.1f} KB gzip")
    for url, body in sorted(assets.items()):
        print(f"  {url.rsplit('/', 1)[-1]:<40} {len(gzip.compress(body, 6)) / 1024:7.1f} KB gzip")
    median_load = sorted(timelines, key=lambda item: item[0])[len(timelines) // 2]
    print(f"the median load ({median_load[0]:.3f} s), when each response ended (ms since navigation start):")
    for name, ended in median_load[1]:
        if ended <= median_load[0] * 1000:
            print(f"  {ended:7.0f}  {name[:90]}")
    print(f"machine: {machine}")
    print("load average before: {:.2f} {:.2f} {:.2f}; after: {:.2f} {:.2f} {:.2f}".format(*load_before, *load_after))


if __name__ == "__main__":
    main()
