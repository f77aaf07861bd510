"""The production run mode: gunicorn + qcluster processes on PostgreSQL (or SQLite) and Redis, DEBUG off,
whitenoise serving collected static files, and one SIGTERM stopping every process it started."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings

from tests.test_run_demo import ROOT, free_port, wait_until_gone

# Redis database numbers of the production-mode tests (the cache and the broker): none of the
# suite's other tests uses them, and nothing here leaves tasks behind.
BOOT_REDIS_DB = 13


def production_env(tmp_path: Path, database_url: str, **overrides: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("META_", "SECRET_KEY", "CACHE_URL", "DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE", "Q_", "LOG_", "FAST_PASSWORD"))}
    return {
        **clean,
        "DEBUG": "false",
        "SECRET_KEY": "production-boot-test-" + "k3y-" * 10,
        "META_TOKEN_KEYS": Fernet.generate_key().decode(),
        "META_APP_SECRET": "boot-test-app-secret",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": database_url,
        "CACHE_URL": f"redis://127.0.0.1:6379/{BOOT_REDIS_DB}",
        "Q_BROKER_URL": f"redis://127.0.0.1:6379/{BOOT_REDIS_DB}",
        "Q_WORKERS": "1",
        "Q_SYNC": "false",
        "STATIC_ROOT": str(tmp_path / "static"),
        "TRUSTED_PROXY_COUNT": "1",  # the test plays the TLS proxy: X-Forwarded-Proto: https
        "STOP_TIMEOUT": "20",
        **overrides,
    }


def boot_database_url(tmp_path: Path, env: dict[str, str]) -> str:
    """The suite's own test database on PostgreSQL (already migrated); a migrated file on SQLite."""
    settings_dict = connection.settings_dict
    if connection.vendor == "postgresql":
        return f"postgres://{settings_dict['USER'] or 'postgres'}@{settings_dict['HOST'] or '127.0.0.1'}:{settings_dict['PORT'] or 5432}/{settings_dict['NAME']}"
    url = f"sqlite:///{tmp_path / 'production.sqlite3'}"
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env={**env, "DATABASE_URL": url}, check=True, timeout=300)
    return url


def wait_for(url: str, seconds: float = 90) -> requests.Response:
    """The first answer of a server that is still booting (gunicorn listens before its workers are ready)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return requests.get(url, timeout=10)
        except (requests.ConnectionError, requests.Timeout):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def children_of(pid: int) -> list[str]:
    """Every descendant of ``pid`` (gunicorn master and workers, each qcluster and its workers)."""
    found, frontier = [], [str(pid)]
    while frontier:
        parent = frontier.pop()
        kids = subprocess.run(["pgrep", "-P", parent], capture_output=True, text=True).stdout.split()
        found += kids
        frontier += kids
    return found


def command_of(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def stop_everything(server: subprocess.Popen, processes: list[str]) -> None:
    """After a failure half-way: stop the supervisor (it stops its children), kill what is left."""
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
    for pid in processes + children_of(server.pid):
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_make_serve_mode_serves_health_readiness_and_static_files_and_sigterm_stops_every_process(db, tmp_path):
    env = production_env(tmp_path, "", QCLUSTER_NICE="5")
    env["DATABASE_URL"] = boot_database_url(tmp_path, env)
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)
    manifest = json.loads((tmp_path / "static" / "staticfiles.json").read_text())["paths"]
    port = free_port()
    server = subprocess.Popen([sys.executable, "manage.py", "run_production", "--bind", f"127.0.0.1:{port}", "--workers", "2",
                               "--threads", "2", "--qcluster-processes", "2"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    processes: list[str] = []
    try:
        health = wait_for(f"http://127.0.0.1:{port}/healthz")
        ready = requests.get(f"http://127.0.0.1:{port}/readyz", headers={"X-Request-ID": "boot-check-1"}, timeout=10)
        static = requests.get(f"http://127.0.0.1:{port}/static/{manifest['admin/css/base.css']}",
                              headers={"X-Forwarded-Proto": "https", "Accept-Encoding": "gzip"}, timeout=10)
        plain_http_page = requests.get(f"http://127.0.0.1:{port}/accounts/login/", allow_redirects=False, timeout=10)
        processes = children_of(server.pid)
        niceness = {role: {os.getpriority(os.PRIO_PROCESS, int(pid)) for pid in processes if role in command_of(pid)}
                    for role in ("gunicorn", "qcluster")}

        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    finally:
        stop_everything(server, processes)

    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert ready.status_code == 200, ready.text
    assert ready.headers["X-Request-ID"] == "boot-check-1"
    readiness = ready.json()
    queue_depth = readiness["checks"]["broker"].pop("queue_depth")  # the clusters' scheduler may have queued a task
    assert isinstance(queue_depth, int) and queue_depth >= 0
    assert readiness["status"] == "ok" and all(check["ok"] for check in readiness["checks"].values())
    assert {name: readiness["checks"][name] for name in ("database", "cache", "broker", "webhook_events")} == {
        "database": {"ok": True},
        "cache": {"ok": True},
        "broker": {"ok": True, "kind": "redis"},
        "webhook_events": {"ok": True, "pending": 0, "oldest_pending_age_seconds": None},
    }
    assert static.status_code == 200
    assert static.headers["Content-Encoding"] == "gzip"  # whitenoise's precompressed copy
    assert "immutable" in static.headers["Cache-Control"]  # a hashed name from the manifest storage
    assert static.content == (tmp_path / "static" / manifest["admin/css/base.css"]).read_bytes()
    assert plain_http_page.status_code == 301 and plain_http_page.headers["Location"].startswith("https://")
    # gunicorn master + 2 workers; per qcluster: sentinel + worker, monitor, pusher, guard...
    assert len(processes) >= 3 + 2 * 3
    json_lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    readyz_line = next(line for line in json_lines if line["logger"] == "crm_marketing.request" and line["request_id"] == "boot-check-1")
    assert {key: readyz_line[key] for key in ("level", "message", "account_id", "method", "path", "status")} == {
        "level": "INFO", "message": "GET /readyz 200", "account_id": None, "method": "GET", "path": "/readyz", "status": 200}
    assert any(line["logger"] == "gunicorn.error" and line["message"].startswith(f"Listening at: http://127.0.0.1:{port}") for line in json_lines)
    assert any(line["logger"] == "gunicorn.error" and line["message"] == "Using worker: gthread" for line in json_lines)
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert niceness == {"gunicorn": {ours}, "qcluster": {min(19, ours + 5)}}  # QCLUSTER_NICE: web requests go first
    assert "run_production: stopped." in output
    assert server.returncode == 0
    assert wait_until_gone(processes) == []
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_run_production_refuses_to_start_with_debug_on():
    with override_settings(DEBUG=True), pytest.raises(CommandError, match="run_production needs DEBUG=false"):
        call_command("run_production")


def test_run_production_refuses_to_start_on_settings_that_fail_check_deploy(tmp_path):
    env = production_env(tmp_path, f"sqlite:///{tmp_path / 'none.sqlite3'}", SECRET_KEY="a" * 60)  # long but one character

    result = subprocess.run([sys.executable, "manage.py", "run_production"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    assert result.returncode != 0
    assert "security.W009" in result.stderr
    assert "run_production: gunicorn" not in result.stdout  # nothing was started
