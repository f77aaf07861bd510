"""Benchmark the send engine: N due sends over M phone numbers through two `qcluster` processes on
PostgreSQL, against a Meta sandbox process, with the ORM broker and with the Redis broker.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crm_bench_automation .venv/bin/python bench/automation.py \
        [--sends 10000] [--numbers 10] [--brokers orm,redis] [--workers 2] [--kill] [--runs 3] \
        [--redis-url redis://127.0.0.1:6379/13] [--batch N] [--threads N] [--passes N]

The database is DROPPED and recreated (its name must contain "bench"); the Redis database of
``--redis-url`` is flushed. Each run seeds M accounts (one WhatsApp number each, 80 msg/s) with N/M
leads and one due send per lead, starts a sandbox process serving the M numbers, queues the send
passes and starts two `qcluster` processes; with ``--kill`` one worker process of the first cluster
is SIGKILLed once 30 % of the sends went out. The sends fall due once both clusters run tasks (so
Django's start is not counted). Prints per run: sends/s from the first to the last send and between
the 5th and 95th percentile send, p95 delay from due to sent, duplicates and lost (from the sandbox's
own record of what it received, keyed by biz_opaque_callback_data), the highest count any one
number saw in one wall-clock second (the sandbox's counter), the sends the sandbox refused for a
limit, the sends left ``unknown`` and the sandbox's share of one core; then the machine, the data
size, the median over runs and the load average before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import free_port, host, percentile  # noqa: E402
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/crm_bench_automation"
REDIS_URL = "redis://127.0.0.1:6379/13"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
THROUGHPUT = 80
PHONE_BASE = 1390001  # bench phone number ids: 1390001, 1390002, ...
TOKEN = "EAAsandboxFixtureToken10001"




def production_environment(redis_url: str) -> dict[str, str]:
    """The workers' (and the seed's) settings as `make serve` runs them: DEBUG off (no query log), the
    shared Redis cache production requires (so the send limiter is in Redis with either broker), fresh
    keys (the seed encrypts the token with the same ones the workers decrypt it with)."""
    import secrets

    from cryptography.fernet import Fernet

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("META_", "Q_", "LOG_", "CACHE_"))}
    return {**clean, "DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "127.0.0.1",
            "META_TOKEN_KEYS": Fernet.generate_key().decode(), "META_APP_SECRET": secrets.token_hex(16),
            "CACHE_URL": redis_url, "LOG_LEVEL": "WARNING"}


# -- the sandbox process ------------------------------------------------------------------------------------
def serve_sandbox(port: int, numbers: int, stats_file: str) -> None:
    """Run the sandbox with the bench's numbers; on SIGTERM write what it received to ``stats_file``."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm_marketing.settings")
    from crm_marketing.sandbox import MetaSandbox

    # The app secret the workers sign appsecret_proof with (production refuses the sandbox's default one).
    sandbox = MetaSandbox(port=port, app_secret=os.environ.get("META_APP_SECRET", "sandbox-secret"))
    if not hasattr(sandbox, "add_phone_number"):
        sys.exit("this sandbox serves one phone number only (no add_phone_number): merge the sandbox work first")
    for n in range(numbers):
        sandbox.add_phone_number(str(PHONE_BASE + n), throughput_mps=THROUGHPUT)

    def dump(*_):
        with sandbox.state.lock:
            sent = [m.get("biz_opaque_callback_data") for m in sandbox.sent_messages if m.get("type") == "template"]
        peaks = {str(PHONE_BASE + n): sandbox.max_sends_per_second(str(PHONE_BASE + n)) for n in range(numbers)}
        Path(stats_file).write_text(json.dumps({"sent": sent, "max_per_second": peaks, "refused": sandbox.refused_sends()}))
        os._exit(0)

    signal.signal(signal.SIGTERM, dump)
    sandbox.serve_forever()


# -- one run ----------------------------------------------------------------------------------------------------------
def one_run(args: argparse.Namespace) -> None:
    """In its own process (the broker is a setting): seed, start everything, measure, print one JSON line."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm_marketing.settings")
    import django

    django.setup()
    from django.db import connection
    from django.utils import timezone
    from django_q.tasks import async_task

    from django.db.models import Count

    from automation.models import MessageSend

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE automation_messagesend, automation_throughputslot, automation_enginepass, "
                       "django_q_ormq, django_q_task RESTART IDENTITY CASCADE")
    import redis

    redis.Redis.from_url(args.redis_url).flushdb()  # the broker's queue (Redis runs) and the cache (the limiter)
    port = free_port()
    stats_file = tempfile.mktemp(prefix="sandbox-stats-", suffix=".json")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    sandbox = subprocess.Popen([sys.executable, __file__, "--serve-sandbox", str(port), str(args.numbers), stats_file],
                               env=env, cwd=ROOT)
    time.sleep(2)
    seed(numbers=args.numbers, sends=args.sends, phone_base=PHONE_BASE, token=TOKEN, due_in=timedelta(hours=1))
    total = MessageSend.objects.count()
    worker_env = dict(env, META_GRAPH_URL=f"http://127.0.0.1:{port}", Q_WORKERS=str(args.workers),
                      AUTOMATION_PASS_SECONDS="600", AUTOMATION_SEND_LEASE_SECONDS="20",
                      Q_BROKER_URL=args.redis_url if args.broker == "redis" else "")
    if args.batch:
        worker_env["AUTOMATION_PASS_BATCH"] = str(args.batch)
    if args.threads:
        worker_env["AUTOMATION_SEND_THREADS"] = str(args.threads)
    clusters = [subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=worker_env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
                for _ in range(2)]
    killed, sandbox_share = None, float("nan")
    try:
        wait_for_clusters(args.timeout)
        # The sends fall due now that both clusters are up (their start is Django's, not the engine's).
        MessageSend.objects.update(due_at=timezone.now())
        sandbox_cpu_before, started = cpu_seconds(sandbox.pid), time.monotonic()
        for _ in range(args.passes or 2 * args.workers):
            async_task("automation.tasks.run_send_pass", None, 600, task_name="bench-send-pass")
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            counts = dict(MessageSend.objects.values_list("status").annotate(n=Count("id")))
            done = counts.get("sent", 0)
            if args.kill and killed is None and done >= 0.3 * total:
                killed = kill_one_worker(clusters[0].pid)
            if counts.get("queued", 0) + counts.get("sending", 0) == 0:
                break
            time.sleep(0.5)
        sandbox_share = (cpu_seconds(sandbox.pid) - sandbox_cpu_before) / max(1e-9, time.monotonic() - started)
    finally:
        for cluster in clusters:
            try:
                os.killpg(cluster.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for cluster in clusters:
            try:
                cluster.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(cluster.pid, signal.SIGKILL)
        sandbox.send_signal(signal.SIGTERM)
        sandbox.wait(timeout=30)
    received = json.loads(Path(stats_file).read_text())
    os.unlink(stats_file)
    rows = list(MessageSend.objects.filter(sent_at__isnull=False).values_list("due_at", "sent_at"))
    sent_times = sorted(sent for _, sent in rows)
    span = (sent_times[-1] - sent_times[0]).total_seconds() if len(sent_times) > 1 else float("nan")
    by_id = Counter(received["sent"])
    ours = set(str(pk) for pk in MessageSend.objects.values_list("pk", flat=True))
    statuses = dict(MessageSend.objects.values_list("status").annotate(n=Count("id")))
    print(json.dumps({
        "broker": args.broker, "kill": bool(args.kill), "killed_pid": killed, "sends": total,
        "sent_per_second": round(len(sent_times) / span, 1) if span == span and span > 0 else None,
        "sustained_per_second": sustained_rate(sent_times),
        "p95_due_to_sent_s": round(percentile([(s - d).total_seconds() for d, s in rows], 0.95), 2),
        "duplicates": sum(c - 1 for c in by_id.values() if c > 1),
        "lost": len(ours - set(by_id)), "max_per_number_second": max(received["max_per_second"].values()),
        "unknown": statuses.get("unknown", 0), "sandbox_cpu_share": round(sandbox_share, 2),
        "refused_by_sandbox": received.get("refused", {}),
        "unknown_why": dict(Counter(MessageSend.objects.filter(status="unknown").values_list("error_title", flat=True))),
        "statuses": statuses, "at": timezone.now().isoformat()}))


def sustained_rate(sent_times: list) -> float | None:
    """Sends per second between the 5th and the 95th percentile send: the rate without the start and
    without a tail of sends retried after an error's backoff."""
    if len(sent_times) < 20:
        return None
    low, high = sent_times[len(sent_times) * 5 // 100], sent_times[len(sent_times) * 95 // 100]
    seconds = (high - low).total_seconds()
    return round(len(sent_times) * 0.9 / seconds, 1) if seconds > 0 else None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def wait_for_clusters(timeout: float) -> None:
    """Until the clusters run tasks: a probe task per worker slot has come back."""
    from django_q.models import Task
    from django_q.tasks import async_task

    probes = {async_task("math.floor", 1.5, task_name=f"bench-probe-{n}") for n in range(4)}
    deadline = time.monotonic() + timeout
    while Task.objects.filter(id__in=probes).count() < len(probes):
        if time.monotonic() > deadline:
            sys.exit("the qcluster processes never ran a task")
        time.sleep(0.2)


def seed(*, numbers: int, sends: int, phone_base: int, token: str, due_in: timedelta = timedelta(0)) -> None:
    """M accounts with one number, the approved template, a rule and N/M leads with one send each, due
    ``due_in`` from now."""
    from django.db import transaction
    from django.utils import timezone

    from automation.models import AutomationRule, MessageSend, MessageTemplate, RuleStep
    from crm_marketing.models import Account, Lead
    from meta_oauth.models import MetaConnection, WhatsAppChannel

    now = timezone.now()
    per_number = sends // numbers
    with transaction.atomic():
        for n in range(numbers):
            account, created = Account.objects.get_or_create(
                slug=f"bench-wa-{n}", defaults={"name": f"Bench WA {n}", "currency": "USD", "timezone": "UTC"})
            if created:
                connection = MetaConnection(account=account, status="connected", meta_user_id="10001", connected_at=now)
                connection.set_token(token)
                connection.save()
                WhatsAppChannel.objects.create(account=account, meta_waba_id="1200001", meta_phone_number_id=str(phone_base + n),
                                               throughput_mps=THROUGHPUT, is_selected=True)
                template = MessageTemplate.objects.create(
                    account=account, meta_template_id="1100001", meta_waba_id="1200001", name="seguimiento_lead_v1",
                    language="es", status="APPROVED", components=[{"type": "BODY", "text": "Hola {{1}}"}])
                rule = AutomationRule.objects.create(account=account, name="Bench welcome", trigger_type="lead_created",
                                                     max_sends_per_lead_per_day=100)
                RuleStep.objects.create(account=account, rule=rule, template=template, variables={"1": "lead.first_name"})
                Lead.objects.bulk_create([Lead(account=account, first_name=f"Lead {i}", phone=f"+5491{n:02d}{i:07d}")
                                          for i in range(per_number)], batch_size=2000)
            rule = AutomationRule.objects.get(account=account)
            step = rule.steps.get()
            MessageSend.objects.bulk_create([
                MessageSend(account=account, rule=rule, step=step, lead_id=lead_id, template_id=step.template_id,
                            trigger_type="lead_created", trigger_key=f"bench:{now.timestamp()}", rule_name=rule.name,
                            template_name="seguimiento_lead_v1", due_at=now + due_in, created_at=now)
                for lead_id in Lead.objects.filter(account=account).values_list("pk", flat=True)], batch_size=2000)


def kill_one_worker(cluster_pid: int) -> int | None:
    """SIGKILL the first worker process of a qcluster (its sentinel's oldest child) mid-run."""
    def children(pid: int) -> list[int]:
        try:
            return sorted(int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
        except OSError:
            return []

    for sentinel in children(cluster_pid):
        workers = children(sentinel)
        if workers:
            os.kill(workers[0], signal.SIGKILL)
            return workers[0]
    return None


# -- the orchestrator ----------------------------------------------------------------------------------------------------
def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-sandbox":
        serve_sandbox(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sends", type=int, default=10_000)
    parser.add_argument("--numbers", type=int, default=10)
    parser.add_argument("--brokers", default="orm,redis")
    parser.add_argument("--workers", type=int, default=2, help="Q_WORKERS of each of the two qcluster processes")
    parser.add_argument("--kill", action="store_true", help="also run with one worker SIGKILLed mid-run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", REDIS_URL), help="flushed before each Redis run")
    parser.add_argument("--batch", type=int, default=0, help="AUTOMATION_PASS_BATCH (default: the setting's)")
    parser.add_argument("--threads", type=int, default=0, help="AUTOMATION_SEND_THREADS (default: the setting's)")
    parser.add_argument("--passes", type=int, default=0, help="send passes queued at the start (default 2 x workers)")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--one-run", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--broker", default="orm", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("DATABASE_URL", DEFAULT_URL)
    if args.one_run:
        one_run(args)
        return
    url = os.environ["DATABASE_URL"]
    if "bench" not in url.rsplit("/", 1)[-1]:
        sys.exit("DATABASE_URL must name a database containing 'bench': it is dropped and recreated")
    load_before, machine = os.getloadavg(), host()  # the calibration while the machine is still idle
    recreate_database(url)
    results = []
    production = production_environment(args.redis_url)
    for broker in [b for b in args.brokers.split(",") if b]:
        for kill in ([False, True] if args.kill else [False]):
            for _ in range(args.runs):
                cmd = [sys.executable, __file__, "--one-run", "--broker", broker, "--sends", str(args.sends),
                       "--numbers", str(args.numbers), "--workers", str(args.workers), "--timeout", str(args.timeout),
                       "--redis-url", args.redis_url, "--batch", str(args.batch), "--threads", str(args.threads),
                       "--passes", str(args.passes)]
                # The run queues its passes on the broker its clusters read: the broker is a setting.
                broker_env = dict(production, Q_BROKER_URL=args.redis_url if broker == "redis" else "")
                out = subprocess.run(cmd + (["--kill"] if kill else []), capture_output=True, text=True, cwd=ROOT,
                                     env=broker_env)
                line = next((ln for ln in reversed(out.stdout.splitlines()) if ln.startswith("{")), None)
                if line is None:
                    sys.exit(f"run failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
                results.append(json.loads(line))
                print(line, flush=True)
    report(results, args, load_before, machine)


def recreate_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[-1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, check=True)


def report(results: list[dict], args: argparse.Namespace, load_before: tuple[float, float, float], machine: str) -> None:
    after = os.getloadavg()
    print(f"\nMachine: {machine}; load average before {' '.join(f'{x:.2f}' for x in load_before)}, "
          f"after {' '.join(f'{x:.2f}' for x in after)}")
    print(f"Data: {args.sends} due sends over {args.numbers} numbers ({THROUGHPUT} msg/s each), "
          f"2 qcluster x {args.workers} workers, {args.passes or 2 * args.workers} passes, "
          f"batch {args.batch or 'default'}, threads {args.threads or 'default'}, median of {args.runs} run(s)")
    print(f"{'broker':<8}{'kill':<6}{'sends/s':>9}{'p5-p95':>8}{'p95 s':>8}{'dup':>6}{'lost':>6}{'unknown':>9}"
          f"{'max/num/s':>11}{'refused':>9}{'sandbox':>9}")
    groups: dict[tuple, list[dict]] = {}
    for result in results:
        groups.setdefault((result["broker"], result["kill"]), []).append(result)
    for (broker, kill), runs in groups.items():
        def med(key):
            values = [r[key] for r in runs if r[key] is not None]
            return statistics.median(values) if values else float("nan")
        refused = max(sum(r["refused_by_sandbox"].values()) for r in runs)
        print(f"{broker:<8}{'yes' if kill else 'no':<6}{med('sent_per_second'):>9.1f}{med('sustained_per_second'):>8.1f}"
              f"{med('p95_due_to_sent_s'):>8.2f}{max(r['duplicates'] for r in runs):>6}{max(r['lost'] for r in runs):>6}"
              f"{max(r['unknown'] for r in runs):>9}{max(r['max_per_number_second'] for r in runs):>11}{refused:>9}"
              f"{med('sandbox_cpu_share'):>9.2f}")
    print("sends/s: first to last send; p5-p95: between the 5th and 95th percentile send; refused: the sandbox's\n"
          "130429/131056 answers (retried); sandbox: its share of one core. Dup, lost, unknown, max, refused: worst run.")
    print("Targets: >= 500 sends/s, each number <= 80/s, 0 duplicates, 0 lost")


if __name__ == "__main__":
    main()
