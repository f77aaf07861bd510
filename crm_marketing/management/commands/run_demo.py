"""manage.py run_demo: the web server, the django-q2 worker and the Meta sandbox in one foreground
command. Ctrl-C (or any of them exiting) stops all three."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from crm_marketing.demo import DEMO_ACCOUNTS, DEMO_PASSWORD


class Command(BaseCommand):
    help = "Run the demo: web on 127.0.0.1:8000, the qcluster worker and the Meta sandbox."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--sandbox-port", type=int, default=8765)

    def handle(self, *args, port, sandbox_port, **options):
        # Ctrl-C, or a TERM from a supervisor, stops all three (even when started with SIGINT ignored).
        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        env = {**os.environ, "META_GRAPH_URL": sandbox_url, "META_DIALOG_URL": sandbox_url, "PYTHONUNBUFFERED": "1"}
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        commands = {
            # The sandbox POSTs its status / preference / template webhooks to the app, like Meta.
            "sandbox": manage + ["run_meta_sandbox", "--port", str(sandbox_port),
                                 "--webhook-url", f"http://127.0.0.1:{port}/webhooks/meta"],
            "worker": manage + ["qcluster"],
            "web": manage + ["runserver", f"127.0.0.1:{port}", "--noreload"],
        }
        # Each in its own process group, so stopping one also stops the processes it forked (qcluster's workers).
        processes = {name: subprocess.Popen(cmd, env=env, start_new_session=True) for name, cmd in commands.items()}
        self.stdout.write(self.style.SUCCESS(f"\nCRM Ventas Marketing demo: http://127.0.0.1:{port}/  (admin: http://127.0.0.1:{port}/admin/)"))
        self.stdout.write(f"Meta sandbox: {sandbox_url}   Logins (password {DEMO_PASSWORD}):")
        for spec in DEMO_ACCOUNTS:
            self.stdout.write(f"  {spec.slug}: " + ", ".join(f"{u} ({r})" for u, r in spec.users))
        self.stdout.write("Ctrl-C stops everything.\n")
        try:
            while all(p.poll() is None for p in processes.values()):
                time.sleep(0.5)
            stopped = [name for name, p in processes.items() if p.poll() is not None]
            self.stderr.write(f"{', '.join(stopped)} stopped; shutting the demo down.")
        except KeyboardInterrupt:
            self.stdout.write("\nStopping the demo...")
        finally:
            _stop_all(list(processes.values()))


_HURRY: list[int] = []  # the signals received once stopping began


def _hurry(signum, frame):
    _HURRY.append(signum)


def _stop(signum, frame):
    # From here on a second Ctrl-C (or TERM) only hurries the cleanup: raising again would interrupt it.
    signal.signal(signal.SIGINT, _hurry)
    signal.signal(signal.SIGTERM, _hurry)
    raise KeyboardInterrupt


def _stop_all(processes: list[subprocess.Popen], grace: float = 10) -> None:
    """TERM every group, wait up to ``grace`` seconds, then KILL what is left. A second Ctrl-C (or TERM)
    while waiting means "now": it skips the rest of the wait instead of interrupting the cleanup, which
    would leave the worker running on its own (found by pressing Ctrl-C twice)."""
    signal.signal(signal.SIGINT, _hurry)
    signal.signal(signal.SIGTERM, _hurry)
    for process in processes:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while not _HURRY and time.monotonic() < deadline and any(process.poll() is None for process in processes):
        time.sleep(0.1)
    for process in processes:
        _signal_group(process, signal.SIGKILL)  # whatever is left of the group, forked children included
        process.wait()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass
