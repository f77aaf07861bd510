"""`manage.py run_demo` runs the web server, the worker and the Meta sandbox; Ctrl-C stops them all."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, seconds: float = 60) -> requests.Response:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return requests.get(url, timeout=2)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def alive(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_until_gone(pids: list[str], seconds: float = 20) -> list[str]:
    """The pids still alive once they have all exited or the time is up (stopping takes a moment)."""
    deadline = time.monotonic() + seconds
    while (left := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def demo_environment(tmp_path) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}", "Q_SYNC": "false"}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)
    return env


def demo_children(web: int, sandbox: int) -> list[str]:
    return subprocess.run(["pgrep", "-f", f"{ROOT / 'manage.py'} (qcluster|runserver 127.0.0.1:{web}|run_meta_sandbox --port {sandbox})"],
                          capture_output=True, text=True).stdout.split()


def test_run_demo_serves_the_app_and_the_sandbox_and_ctrl_c_stops_every_process(tmp_path):
    env = demo_environment(tmp_path)
    web, sandbox = free_port(), free_port()
    demo = subprocess.Popen([sys.executable, "manage.py", "run_demo", "--port", str(web), "--sandbox-port", str(sandbox)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        login = wait_for(f"http://127.0.0.1:{web}/accounts/login/")
        sandbox_log = wait_for(f"http://127.0.0.1:{sandbox}/_sandbox/log")
        children = demo_children(web, sandbox)

        demo.send_signal(signal.SIGINT)  # what Ctrl-C sends
        output, _ = demo.communicate(timeout=30)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)

    assert login.status_code == 200 and b"Sign in" in login.content
    assert sandbox_log.json() == {"requests": [], "sent_messages": []}
    assert len(children) >= 3  # web, sandbox and the qcluster processes
    assert f"http://127.0.0.1:{web}/" in output and "alice (ceo)" in output
    assert demo.returncode == 0
    assert wait_until_gone(children) == []
    for port in (web, sandbox):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_pressing_ctrl_c_twice_stops_every_process_at_once_and_leaves_none_behind(tmp_path):
    env = demo_environment(tmp_path)
    web, sandbox = free_port(), free_port()
    demo = subprocess.Popen([sys.executable, "manage.py", "run_demo", "--port", str(web), "--sandbox-port", str(sandbox)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    children: list[str] = []
    try:
        wait_for(f"http://127.0.0.1:{web}/accounts/login/")
        wait_for(f"http://127.0.0.1:{sandbox}/_sandbox/log")
        children = demo_children(web, sandbox)

        demo.send_signal(signal.SIGINT)
        time.sleep(0.3)  # the impatient second Ctrl-C, while the three are still stopping
        demo.send_signal(signal.SIGINT)
        output, _ = demo.communicate(timeout=30)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
        left = wait_until_gone(children, seconds=10)
        for pid in left:  # never leave a worker of this test running into the next ones
            os.kill(int(pid), signal.SIGKILL)

    assert len(children) >= 3
    assert left == []
    assert demo.returncode == 0, output[-2000:]
    assert "Traceback" not in output
