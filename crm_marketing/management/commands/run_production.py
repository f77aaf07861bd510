"""manage.py run_production: gunicorn and QCLUSTER_PROCESSES qcluster processes, supervised together.

gunicorn runs WEB_CONCURRENCY workers of WEB_THREADS threads each (gthread when more than one); the
qcluster processes run at QCLUSTER_NICE (on a host that also serves the web, tasks can wait a moment
while a person waiting on a page cannot; docs/reliability-load.md has the figures).

What `make serve` ends with (after migrate and collectstatic). Each child runs in its own process
group, so a stop reaches what it forked too (gunicorn's and qcluster's workers). SIGTERM or SIGINT
stops them all gracefully (gunicorn finishes its requests, qcluster its tasks), and what is left of
each group gets SIGKILL after STOP_TIMEOUT. If one child dies on its own the others are stopped and the command exits 1, so the
host's supervisor (systemd, a container runtime) restarts the set as one.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Run the production processes: gunicorn on WEB_BIND and QCLUSTER_PROCESSES django-q2 clusters."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default=None, help="host:port for gunicorn (default WEB_BIND)")
        parser.add_argument("--workers", type=int, default=None, help="gunicorn workers (default WEB_CONCURRENCY)")
        parser.add_argument("--threads", type=int, default=None, help="threads per gunicorn worker (default WEB_THREADS)")
        parser.add_argument("--qcluster-processes", type=int, default=None, help="qcluster processes (default QCLUSTER_PROCESSES)")

    def handle(self, *args, bind, workers, threads, qcluster_processes, **options):
        if settings.DEBUG:
            raise CommandError("run_production needs DEBUG=false and the production settings (docs/production.md); use `make demo` to try the app.")
        bind = bind or settings.WEB_BIND
        workers = workers if workers is not None else settings.WEB_CONCURRENCY
        threads = threads if threads is not None else settings.WEB_THREADS
        clusters = qcluster_processes if qcluster_processes is not None else settings.QCLUSTER_PROCESSES
        if workers < 1 or threads < 1 or clusters < 0:
            raise CommandError("--workers and --threads must be at least 1 and --qcluster-processes at least 0.")
        # The same checks a deploy is held to: refuse to start on a warning rather than run half-safe.
        call_command("check", deploy=True, fail_level="WARNING")

        stop_requested: list[int] = []
        signal.signal(signal.SIGTERM, lambda signum, frame: stop_requested.append(signum))
        signal.signal(signal.SIGINT, lambda signum, frame: stop_requested.append(signum))

        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        commands = {"web": [sys.executable, "-m", "gunicorn", "crm_marketing.wsgi:application", "--bind", bind,
                            "--workers", str(workers), "--threads", str(threads), "--timeout", str(settings.WEB_TIMEOUT),
                            "--graceful-timeout", str(settings.STOP_TIMEOUT), "--no-control-socket"]}
        if settings.LOG_FORMAT == "json":
            # gunicorn's own lines (boot, worker restarts) in the same JSON, masked the same way; its
            # access log stays off (WARNING): the app's request line (LOG_REQUESTS) is the access log.
            commands["web"] += ["--log-config-json", str(settings.BASE_DIR / "crm_marketing" / "gunicorn_logging.json")]
        commands.update({f"qcluster-{n}": manage + ["qcluster"] for n in range(1, clusters + 1)})
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        nice = settings.QCLUSTER_NICE  # tasks can wait a moment, a person waiting on a page cannot
        processes = {name: subprocess.Popen(cmd, env=env, cwd=settings.BASE_DIR, start_new_session=True,
                                            preexec_fn=(lambda: os.nice(nice)) if nice and name != "web" else None)
                     for name, cmd in commands.items()}
        shape = f"{workers} workers" + (f" x {threads} threads" if threads > 1 else "")
        self.stdout.write(f"run_production: gunicorn on {bind} ({shape}), {clusters} qcluster process(es) "
                          f"of {settings.Q_CLUSTER['workers']} workers{f' at nice {nice}' if nice and clusters else ''}; pids "
                          + ", ".join(f"{name}={p.pid}" for name, p in processes.items()), ending="\n")
        self.stdout.flush()

        exited: list[str] = []
        while not stop_requested and not exited:
            time.sleep(0.5)
            exited = [name for name, p in processes.items() if p.poll() is not None]
        if exited:
            self.stderr.write(f"run_production: {', '.join(exited)} exited; stopping the others.")
        _stop_all(processes.values(), timeout=settings.STOP_TIMEOUT)
        if exited and not stop_requested:
            sys.exit(1)
        self.stdout.write("run_production: stopped.")


def _stop_all(processes, *, timeout: float) -> None:
    """TERM each child (the gunicorn master, each qcluster's sentinel: they stop their own workers
    gracefully; a TERM to the whole group would hit the workers mid-task), wait up to ``timeout``,
    then KILL whatever is left of each process group."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for process in processes:
        _signal_group(process, signal.SIGKILL)  # forked children that outlived their parent included
        process.wait()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass
