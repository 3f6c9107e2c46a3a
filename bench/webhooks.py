"""Benchmark: Stripe webhook intake under gunicorn, beside a bare verify-only endpoint.

    .venv/bin/python bench/webhooks.py --events 6000 --rounds 3

In one run, on 127.0.0.1:
  - a throw-away PostgreSQL database, migrated, with one paid order per event;
  - the console (`gunicorn -c gunicorn.conf.py wsgi:app`) and the peer
    (`bench/bare_webhook.py`: the `stripe` SDK's signature check and nothing
    else) under the same gunicorn settings, GUNICORN_WORKERS=2 each;
  - a load generator (asyncio, HTTP/1.1 keep-alive, `--concurrency`
    connections) posting signed `payment_intent.succeeded` events in Stripe's
    format, each with its own event id, to the peer and the console in
    alternating rounds (the same bodies, signed at send time);
  - then real job workers (`flask --app wsgi jobs worker`) drain what the
    console stored, and the database is checked: every event answered 200 is
    stored once, processed once (attempts = 1), and its order confirmed.
Prints events/s and p50/p95/p99 per round and side, the ratio, the drain rate
and the checks, and a Markdown table to paste. Bench-only; never in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import platform
import secrets
import signal
import socket
import statistics
import string
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SECRET = "whsec_bench_" + secrets.token_hex(8)
VENV = ROOT / ".venv" / "bin"


# --------------------------------------------------------------------------- events


def stripe_id(prefix: str, run: str, i: int) -> str:
    """An id shaped like Stripe's (letters and digits, no long digit run a PAN check flags)."""
    return f"{prefix}_1{run}{_letters(i)}"


def _letters(i: int) -> str:
    out = ""
    for _ in range(6):
        i, r = divmod(i, 52)
        out += string.ascii_letters[r]
    return out


def payment_intent_event(i: int, run: str) -> tuple[str, bytes]:
    """A `payment_intent.succeeded` event as Stripe sends it (API 2024-06-20), ~2.5 KB."""
    now = int(time.time())
    pi_id = stripe_id("pi", run, i)
    charge_id = stripe_id("ch", run, i)
    amount = 1000 + i % 5000
    event_id = stripe_id("evt", run, i) + secrets.token_urlsafe(9).replace("-", "x").replace(
        "_", "y"
    )
    obj = {
        "id": pi_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": amount,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": {"allow_redirects": "always", "enabled": True},
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic_async",
        "client_secret": f"{pi_id}_secret_{secrets.token_hex(12)}",
        "confirmation_method": "automatic",
        "created": now - 5,
        "currency": "eur",
        "customer": f"cus_{run}{i % 1000:06d}",
        "description": f"Order ORD-W{run}{i:07d}",
        "invoice": None,
        "last_payment_error": None,
        "latest_charge": charge_id,
        "livemode": False,
        "metadata": {"order_id": f"ORD-W{run}{i:07d}", "listing_id": f"L-{i % 300}"},
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": f"pm_{secrets.token_hex(12)}",
        "payment_method_configuration_details": {
            "id": "pmc_1PbenchConfiguration",
            "parent": None,
        },
        "payment_method_options": {
            "card": {
                "installments": None,
                "mandate_options": None,
                "network": None,
                "request_three_d_secure": "automatic",
            },
            "link": {"persistent_token": None},
        },
        "payment_method_types": ["card", "link"],
        "processing": None,
        "receipt_email": f"buyer{i}@example.com",
        "review": None,
        "setup_future_usage": None,
        "shipping": {
            "address": {
                "city": "Lyon",
                "country": "FR",
                "line1": f"{i % 200} rue de la République",
                "line2": None,
                "postal_code": "69002",
                "state": None,
            },
            "carrier": None,
            "name": "Camille Martin",
            "phone": None,
            "tracking_number": None,
        },
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded",
        "transfer_data": None,
        "transfer_group": f"group_ORD-W{run}{i:07d}",
    }
    event = {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": now,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": f"req_{secrets.token_hex(7)}", "idempotency_key": str(uuid.uuid4())},
        "type": "payment_intent.succeeded",
    }
    return event_id, json.dumps(event, indent=2).encode()  # Stripe sends it pretty-printed


def sign(body: bytes) -> str:
    t = int(time.time())
    mac = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


# --------------------------------------------------------------------------- load generator


@dataclass
class Round:
    side: str
    sent: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    ok_ids: list[str] = field(default_factory=list)
    cpu_ms: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        data = sorted(self.latencies)
        if not data:
            return 0.0
        return data[min(len(data) - 1, int(q * len(data)))] * 1000


async def _post(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int, body: bytes
) -> int:
    head = (
        f"POST /webhooks/stripe HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json; charset=utf-8\r\nStripe-Signature: {sign(body)}\r\n"
        f"User-Agent: Stripe/1.0 (+https://stripe.com/docs/webhooks)\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    writer.write(head + body)
    await writer.drain()
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("server closed the connection")
    status = int(status_line.split()[1])
    length = 0
    close = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value.strip())
        elif name.lower() == "connection" and value.strip().lower() == "close":
            close = True
    if length:
        await reader.readexactly(length)
    if close:
        raise ConnectionResetError("server asked to close")
    return status


async def _load(port: int, events: list[tuple[str, bytes]], concurrency: int, side: str) -> Round:
    result = Round(side)
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for item in events:
        queue.put_nowait(item)

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                try:
                    event_id, body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                started = time.perf_counter()
                try:
                    status = await _post(reader, writer, port, body)
                except (ConnectionError, asyncio.IncompleteReadError):
                    # gunicorn's max_requests recycles a worker: reconnect, resend.
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    status = await _post(reader, writer, port, body)
                result.latencies.append(time.perf_counter() - started)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                result.sent += 1
                if status == 200:
                    result.ok_ids.append(event_id)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server did not listen on {port}:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def spy_on(master: subprocess.Popen[bytes], logdir: Path, n: int) -> list[subprocess.Popen[bytes]]:
    """py-spy on each worker of a gunicorn master, until SIGINT (raw stacks, for flame graphs)."""
    return [
        subprocess.Popen(
            [
                str(VENV / "py-spy"),
                "record",
                "-p",
                str(pid),
                "-f",
                "raw",
                "-r",
                "200",
                "--nonblocking",
                "-o",
                str(logdir / f"py-spy-round{n + 1}-{pid}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in _children(master.pid)
    ]


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each live process so far (utime + stime from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / tick
    return out


def cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds between two readings; a process that exited in between is not counted."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def process_groups(master: subprocess.Popen[bytes]) -> dict[str, list[int]]:
    """The processes whose CPU a round is charged: its gunicorn, PostgreSQL, this generator."""
    postgres = [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and _comm(p) in ("postgres", "postmaster")
    ]
    return {
        "gunicorn": [master.pid, *_children(master.pid)],
        "postgres": postgres,
        "generator": [os.getpid()],
    }


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _comm(proc: Path) -> str:
    try:
        return (proc / "comm").read_text().strip()
    except OSError:
        return ""


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    with psycopg.connect(ADMIN) as conn:
        pg = conn.execute("SHOW server_version").fetchone()
        sync = conn.execute("SHOW synchronous_commit").fetchone()
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"PostgreSQL {pg[0] if pg else '?'} (synchronous_commit={sync[0] if sync else '?'})"
    )


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=6000, help="events per round and side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--gunicorn-workers", type=int, default=2)
    parser.add_argument("--job-workers", type=int, default=1, help="worker processes draining")
    parser.add_argument("--job-concurrency", type=int, default=4)
    parser.add_argument("--drain-timeout", type=float, default=600)
    parser.add_argument(
        "--py-spy",
        action="store_true",
        help="record the console's gunicorn workers with py-spy during its rounds (raw "
        "stacks in the log folder; pip install -r bench/requirements.txt)",
    )
    args = parser.parse_args()

    run = secrets.token_hex(3)
    name = f"console_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN.rsplit("/", 1)[0]
    url = base.replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    procs: list[subprocess.Popen[bytes]] = []
    logdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-webhooks-{run}"
    logdir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}; load average before: {load_average()}")
    try:
        from alembic import command

        from console.cli import alembic_config

        command.upgrade(alembic_config(url), "head")
        total = args.events * args.rounds
        events = [payment_intent_event(i, run + "m") for i in range(total)]
        warm = [payment_intent_event(i, run + "w") for i in range(300)]
        bare_events = [payment_intent_event(i, run + "b") for i in range(args.events)]
        store_events = [payment_intent_event(i, run + "s") for i in range(total)]
        with psycopg.connect(base + f"/{name}") as conn:
            with conn.cursor().copy(
                "COPY orders (external_id, status, customer_email, amount, currency, "
                "amount_refunded, payment_intent_id, amount_mismatch, paid_at, created_at, "
                "updated_at) FROM STDIN"
            ) as copy:
                for tag, count in (("m", total), ("w", len(warm))):
                    for i in range(count):
                        copy.write_row(
                            (
                                f"ORD-W{run}{tag}{i:07d}",
                                "paid",
                                f"buyer{i}@example.com",
                                1000 + i % 5000,
                                "EUR",
                                0,
                                stripe_id("pi", run + tag, i),
                                False,
                                "now()",
                                "now()",
                                "now()",
                            )
                        )
            conn.commit()
            conn.execute("ANALYZE")
            conn.commit()
        metrics_dir = logdir / "metrics"
        metrics_dir.mkdir(exist_ok=True)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "OIDC_"))},
            "CONSOLE_ENV": "test",
            "DATABASE_URL": url,
            "SECRET_KEY": "bench-secret-key-that-is-long-enough-0123456789abcdef",
            "OIDC_ISSUER": "http://127.0.0.1:9",
            "OIDC_CLIENT_ID": "bench",
            "OIDC_CLIENT_SECRET": "bench",
            "ROLE_MAP": "admins=admin",
            "STRIPE_API_KEY": "sk_test_bench",
            "STRIPE_WEBHOOK_SECRET": SECRET,
            "STRIPE_API_BASE": "http://127.0.0.1:9",
            "AUDIT_SIGNING_KEY": "",
            "AUDIT_CHECKPOINT_DIR": str(logdir / "checkpoints"),
            "GUNICORN_WORKERS": str(args.gunicorn_workers),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "LOG_LEVEL": "WARNING",
        }
        with psycopg.connect(base + f"/{name}", autocommit=True) as conn:
            conn.execute("CREATE TABLE bare_events (LIKE webhook_events INCLUDING ALL)")
        ports = {"console": free_port(), "bare": free_port(), "bare+store": free_port()}
        apps = {
            "console": "wsgi:app",
            "bare": "bench.bare_webhook:app",
            "bare+store": "bench.bare_webhook:app",
        }
        side_env = {"bare+store": {"BARE_STORE_URL": base + f"/{name}"}}
        for side, port in ports.items():
            log = logdir / f"{side}.log"
            proc = subprocess.Popen(
                [str(VENV / "gunicorn"), "-c", "gunicorn.conf.py", apps[side]],
                env={**env, **side_env.get(side, {}), "GUNICORN_BIND": f"127.0.0.1:{port}"},
                cwd=ROOT,
                stdout=log.open("w"),
                stderr=subprocess.STDOUT,
            )
            procs.append(proc)
            wait_listening(port, proc, log)

        # Warm up both (imports, connection pools, plan caches); these events are extra.
        for side, port in ports.items():
            r = asyncio.run(_load(port, warm, args.concurrency, side))
            if r.statuses.get(200) != len(warm):
                raise RuntimeError(f"warm-up of {side} failed: {r.statuses}")

        rounds: list[Round] = []
        print(
            f"{args.rounds} rounds x {args.events:,} events per side, "
            f"{args.concurrency} connections, gunicorn {args.gunicorn_workers} workers"
        )
        for n in range(args.rounds):
            for side in ("bare", "bare+store", "console"):
                batch = {
                    "bare": bare_events,
                    "bare+store": store_events[n * args.events : (n + 1) * args.events],
                    "console": events[n * args.events : (n + 1) * args.events],
                }[side]
                master = procs[list(ports).index(side)]
                spies = spy_on(procs[0], logdir, n) if side == "console" and args.py_spy else []
                cpu_before = {k: cpu_by_pid(v) for k, v in process_groups(master).items()}
                r = asyncio.run(_load(ports[side], batch, args.concurrency, side))
                # Listed again: workers recycled and PostgreSQL backends connected during
                # the round count from zero (a process that exited within it is missed).
                r.cpu_ms = {
                    k: cpu_spent(cpu_before[k], cpu_by_pid(v)) * 1000 / max(1, r.sent)
                    for k, v in process_groups(master).items()
                }
                for spy in spies:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(timeout=30)
                rounds.append(r)
                print(
                    f"  round {n + 1} {side:10s} {r.rate:7.0f} events/s  p50 {r.pct(0.5):6.1f} ms  "
                    f"p95 {r.pct(0.95):6.1f} ms  p99 {r.pct(0.99):6.1f} ms  statuses {r.statuses}  "
                    f"load {load_average()}"
                )
                print(
                    "          CPU per event: "
                    + ", ".join(f"{k} {v:.2f} ms" for k, v in r.cpu_ms.items())
                )
        for proc in procs:
            stop(proc)
        procs.clear()

        # Drain: real job workers process what the console stored.
        with psycopg.connect(base + f"/{name}", autocommit=True) as conn:
            waiting = conn.execute(
                "SELECT count(*) FROM webhook_events WHERE processed_at IS NULL"
            ).fetchone()
            waiting_n = int(waiting[0]) if waiting else 0
            started = time.perf_counter()
            for w in range(args.job_workers):
                log = logdir / f"worker-{w}.log"
                procs.append(
                    subprocess.Popen(
                        [
                            str(VENV / "flask"),
                            "--app",
                            "wsgi",
                            "jobs",
                            "worker",
                            "--no-schedule",
                            "--concurrency",
                            str(args.job_concurrency),
                        ],
                        env=env,
                        cwd=ROOT,
                        stdout=log.open("w"),
                        stderr=subprocess.STDOUT,
                    )
                )
            left = waiting_n
            while time.perf_counter() - started < args.drain_timeout:
                row = conn.execute(
                    "SELECT count(*) FROM webhook_events WHERE processed_at IS NULL"
                ).fetchone()
                left = int(row[0]) if row else 0
                if left == 0:
                    break
                time.sleep(0.2)
            drain_seconds = time.perf_counter() - started
            for proc in procs:
                stop(proc)
            procs.clear()

            console_ok = [i for r in rounds if r.side == "console" for i in r.ok_ids]
            stats = conn.execute(
                """
                SELECT count(*),
                       count(DISTINCT event_id),
                       count(*) FILTER (WHERE status = 'processed'),
                       count(*) FILTER (WHERE attempts > 1),
                       count(*) FILTER (WHERE deliveries > 1),
                       count(*) FILTER (WHERE event_id = ANY(%s))
                FROM webhook_events WHERE event_id LIKE %s
                """,
                (console_ok, f"evt_1{run}m%"),
            ).fetchone()
            assert stats is not None
            confirmed = conn.execute(
                "SELECT count(*) FROM orders WHERE status = 'confirmed' AND external_id LIKE %s",
                (f"ORD-W{run}m%",),
            ).fetchone()
            payments = conn.execute(
                "SELECT count(*), count(DISTINCT payment_intent_id) FROM payments"
            ).fetchone()
        stored, distinct, processed, twice, redelivered, answered_stored = (int(x) for x in stats)
        lost = len(console_ok) - answered_stored
        drain_rate = waiting_n / drain_seconds if drain_seconds else 0.0

        bare = [r for r in rounds if r.side == "bare"]
        stored_peer = [r for r in rounds if r.side == "bare+store"]
        console = [r for r in rounds if r.side == "console"]
        print()
        print(
            f"console stored {stored:,} events ({distinct:,} distinct), answered 200 for "
            f"{len(console_ok):,}; lost {lost}; redelivered {redelivered}; processed {processed:,}; "
            f"processed twice {twice}; "
            f"orders confirmed {confirmed[0] if confirmed else '?'}; payments "
            f"{payments[0] if payments else '?'} ({payments[1] if payments else '?'} distinct)"
        )
        print(
            f"drain: {waiting_n:,} events waiting, {left} left after {drain_seconds:.1f} s "
            f"= {drain_rate:.0f} events/s ({args.job_workers} worker(s) x {args.job_concurrency})"
        )
        print()
        print(
            "| round | bare verify-only events/s | bare verify + store events/s | console "
            "events/s | console / bare | console / bare + store | console p50 / p95 / p99 ms "
            "| bare p99 ms | bare + store p99 ms | CPU ms per event, bare / bare + store / "
            "console (server + PostgreSQL + generator) |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")

        def cpu(r: Round) -> str:
            return f"{sum(r.cpu_ms.values()):.2f}"

        for n, (b, s, c) in enumerate(zip(bare, stored_peer, console, strict=True), 1):
            print(
                f"| {n} | {b.rate:,.0f} | {s.rate:,.0f} | {c.rate:,.0f} | {c.rate / b.rate:.2f} | "
                f"{c.rate / s.rate:.2f} | {c.pct(0.5):.1f} / {c.pct(0.95):.1f} / "
                f"{c.pct(0.99):.1f} | {b.pct(0.99):.1f} | {s.pct(0.99):.1f} | "
                f"{cpu(b)} / {cpu(s)} / {cpu(c)} |"
            )
        med_b = statistics.median(r.rate for r in bare)
        med_s = statistics.median(r.rate for r in stored_peer)
        med_c = statistics.median(r.rate for r in console)
        print(
            f"| median | {med_b:,.0f} | {med_s:,.0f} | {med_c:,.0f} | {med_c / med_b:.2f} | "
            f"{med_c / med_s:.2f} | p99 worst {max(r.pct(0.99) for r in console):.1f} | | | |"
        )
        print()
        print(
            f"goals: >= 500 events/s: {'met' if med_c >= 500 else 'MISSED'}; >= 0.7x bare: "
            f"{'met' if med_c / med_b >= 0.7 else 'MISSED'} (vs verify + store: "
            f"{med_c / med_s:.2f}x); p99 < 100 ms: "
            f"{'met' if max(r.pct(0.99) for r in console) < 100 else 'MISSED'}; 0 lost: "
            f"{'met' if lost == 0 else 'MISSED'}; 0 processed twice: "
            f"{'met' if twice == 0 else 'MISSED'}; all processed after the drain: "
            f"{'yes' if processed == stored else f'no ({stored - processed} waiting)'}"
        )
        print(f"load average after: {load_average()}; logs in {logdir}")
    finally:
        for proc in procs:
            stop(proc)
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
