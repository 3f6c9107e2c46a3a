"""Benchmark: bulk release of N payouts against the Stripe double at 25 req/s.

    .venv/bin/python bench/bench_bulk_release.py --payouts 1000

In one run, on a throw-away PostgreSQL database and the local Stripe double
limited to 25 requests/s (Stripe test mode's limit):
  - the peer: a bare loop of N transfer creations with the same limiter;
  - the console: `execute_approval` of one approval of N payouts, in its own
    process as in production; reports time against N/25 s (goal: within
    10 %), 429 answers seen and rows that did not end released (goal: 0);
  - a crash: a second approval, its worker killed half-way, then
    `payouts resume`; reports duplicate transfers (goal: 0).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
RATE = 25

WORKER = """
import os, sys
from console import create_app, db
from console.payments.gateway import gateway
from console.payouts.release import execute_approval
app = create_app()
with app.app_context():
    counts = execute_approval(db.session(), gateway(), int(sys.argv[1]), actor={"sub": "bench"})
    print(counts, flush=True)
"""


def make_payouts(app, stripe_client, n: int, tag: str) -> int:
    """N eligible payouts with accounts at the double, in one APPROVED approval."""
    from console import db
    from console.payouts.models import ApprovalStatus, PayoutStatus
    from console.payouts.release import request_release
    from tests.factories import make_payout

    with app.app_context():
        s = db.session()
        payouts = []
        for i in range(n):
            p = make_payout(s, amount=1000 + i, destination_account=f"acct_{tag}_{i:05d}")
            payouts.append(p)
        s.flush()
        approval = request_release(s, payouts, actor={"sub": "bench-requester"}, reason="bench")
        approval.status = ApprovalStatus.APPROVED
        for p in payouts:
            p.status = PayoutStatus.APPROVED
        s.commit()
        for p in payouts:
            stripe_client.v1.accounts.create({"type": "express", "id": p.destination_account})
        return approval.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--payouts", type=int, default=1000)
    args = parser.parse_args()
    n = args.payouts
    name = f"console_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    try:
        import stripe
        from alembic import command

        from console.cli import alembic_config
        from devtools.stripe_double import StripeDouble

        command.upgrade(alembic_config(url), "head")
        double = StripeDouble.start()
        env = dict(
            os.environ,
            CONSOLE_ENV="test",
            DATABASE_URL=url,
            STRIPE_API_KEY="sk_test_bench",
            STRIPE_API_BASE=double.url,
            # One under the double's limit: client and server windows never align exactly.
            STRIPE_MAX_REQUESTS_PER_SECOND=str(RATE - 1),
            PYTHONPATH=str(ROOT),
        )
        os.environ.update(
            {
                k: env[k]
                for k in ("CONSOLE_ENV", "DATABASE_URL", "STRIPE_API_KEY", "STRIPE_API_BASE")
            }
        )
        from console import create_app
        from console.payments.gateway import RateLimiter

        app = create_app()
        client = stripe.StripeClient(
            "sk_test_bench", base_addresses={"api": double.url}, max_network_retries=0
        )

        # Peer: a bare loop of N transfers at the same limit.
        for i in range(n):
            client.v1.accounts.create({"type": "express", "id": f"acct_peer_{i:05d}"})
        double.set_rate_limit(RATE)
        limiter = RateLimiter(RATE - 1)
        t0 = time.perf_counter()
        for i in range(n):
            for _attempt in range(5):
                limiter.wait()
                try:
                    client.v1.transfers.create(
                        {"amount": 100, "currency": "eur", "destination": f"acct_peer_{i:05d}"},
                        {"idempotency_key": f"peer-{i}"},
                    )
                    break
                except stripe.RateLimitError:
                    time.sleep(0.5)
        peer = time.perf_counter() - t0
        double.set_rate_limit(0)

        approval_id = make_payouts(app, client, n, "a")
        double.clear_requests_log()
        double.set_rate_limit(RATE)
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", WORKER, str(approval_id)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        console_time = time.perf_counter() - t0
        log = double.requests_log()
        limited = sum(1 for r in log if r["status"] == 429)
        double.set_rate_limit(0)

        # Crash half-way, then resume.
        crash_n = max(n // 5, 20)
        crash_id = make_payouts(app, client, crash_n, "b")
        double.set_rate_limit(RATE)
        worker = subprocess.Popen([sys.executable, "-c", WORKER, str(crash_id)], env=env)
        time.sleep(crash_n / RATE / 2)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        resume = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "payouts", "resume"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        double.set_rate_limit(0)
        transfers: dict[str, int] = {}
        page = client.v1.transfers.list({"limit": 100})
        while True:
            for t in page.data:
                pid = t.to_dict().get("metadata", {}).get("payout_id")
                if pid:
                    transfers[pid] = transfers.get(pid, 0) + 1
            if not page.has_more:
                break
            page = client.v1.transfers.list({"limit": 100, "starting_after": page.data[-1].id})
        duplicates = sum(c - 1 for c in transfers.values() if c > 1)
        with app.app_context():
            from sqlalchemy import func, select

            from console import db
            from console.payouts.models import PayoutStatus, SellerPayout

            not_released = db.session().scalar(
                select(func.count(SellerPayout.id)).where(
                    SellerPayout.status != PayoutStatus.RELEASED
                )
            )
        ideal = n / RATE
        print(f"peer (bare SDK loop, {RATE}/s): {peer:.1f} s for {n} transfers")
        print(
            f"console bulk release:        {console_time:.1f} s  = {console_time / ideal:.2f}x of {ideal:.0f} s ideal, {console_time / peer:.2f}x peer"
        )
        print(f"worker says: {done.stdout.strip()}")
        print(f"429 answers seen: {limited}; payouts not released at the end: {not_released}")
        print(
            f"crash test: {crash_n} payouts, worker killed half-way, resume said: {resume.stdout.strip().splitlines()[-1]}"
        )
        print(f"duplicate transfers: {duplicates}")
        print("goals: within 10 % of the ideal time, 0 rate-limit failures, 0 duplicates")
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
