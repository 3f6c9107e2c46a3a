"""Benchmark: reconcile N PaymentIntents against the Stripe double.

    .venv/bin/python bench/bench_reconcile.py --intents 10000

Fills the double with N succeeded PaymentIntents and a throw-away PostgreSQL
database with the matching orders, then, in the same run, times:
  - the peer: a bare script that only pages through the same list (100 per
    call, the same expand), nothing else;
  - the console: `reconcile run` logic (list calls, comparison, findings).
Reports calls made by each and the time ratio (goal: <= 1.2x the peer), and
checks the clean data set gives no finding. Then runs filtered by one
PaymentIntent and by one order id, with their call counts from the double's
request log (goal: <= 5 whatever N).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import uuid
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--intents", type=int, default=10_000)
    args = parser.parse_args()
    n = args.intents
    name = f"console_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    try:
        import stripe
        from alembic import command
        from sqlalchemy import insert

        from console.cli import alembic_config
        from devtools.stripe_double import StripeDouble, create_succeeded_payment_intent

        command.upgrade(alembic_config(url), "head")
        double = StripeDouble.start()
        os.environ.update(
            CONSOLE_ENV="test",
            DATABASE_URL=url,
            STRIPE_API_KEY="sk_test_bench",
            STRIPE_API_BASE=double.url,
            STRIPE_MAX_REQUESTS_PER_SECOND="0",
            STRIPE_TIMEOUT_SECONDS="20",  # under STRIPE_CALL_DEADLINE_SECONDS (the config insists)
        )
        client = stripe.StripeClient(
            "sk_test_bench", base_addresses={"api": double.url}, max_network_retries=0
        )
        t0 = time.perf_counter()
        rows = []
        for i in range(n):
            pi = create_succeeded_payment_intent(client, amount=500 + i, currency="eur")
            rows.append(
                {
                    "external_id": f"ORD-B{i:07d}",
                    "status": "completed",
                    "customer_email": f"b{i}@example.com",
                    "amount": 500 + i,
                    "currency": "EUR",
                    "payment_intent_id": pi.id,
                }
            )
        print(f"created {n:,} PaymentIntents at the double in {time.perf_counter() - t0:.0f} s")

        from console import create_app, db
        from console.db import utcnow
        from console.orders.models import Order
        from console.payments.gateway import gateway
        from console.reconciliation.services import run_reconciliation

        app = create_app()
        with app.app_context():
            now = utcnow()
            db.session().execute(
                insert(Order),
                [{**r, "created_at": now, "updated_at": now, "paid_at": now} for r in rows],
            )
            db.session().commit()

        # Peer: page through the same list, nothing else.
        double.clear_requests_log()
        t0 = time.perf_counter()
        params = {"limit": 100, "created": {"gte": 0}, "expand": ["data.latest_charge"]}
        page = client.v1.payment_intents.list(params)
        seen = len(page.data)
        while page.has_more:
            page = client.v1.payment_intents.list({**params, "starting_after": page.data[-1].id})
            seen += len(page.data)
        peer = time.perf_counter() - t0
        peer_calls = double.count_requests("GET")

        double.clear_requests_log()
        with app.app_context():
            t0 = time.perf_counter()
            run = run_reconciliation(db.session(), gateway(), {}, started_by="bench")
            console_time = time.perf_counter() - t0
        print(f"peer (bare paging): {peer:.2f} s, {peer_calls} calls, {seen:,} intents")
        print(
            f"console reconcile:  {console_time:.2f} s, {run.stripe_calls} calls, {run.scanned_stripe:,} Stripe objects, "
            f"{run.scanned_local:,} orders = {console_time / peer:.2f}x peer"
        )
        print(f"findings on the clean data set: {run.findings_new} (status {run.status.value})")
        limit = math.ceil(n / 100) + 10
        print(
            f"goal: <= 1.2x the peer's time ({console_time / peer:.2f}x), calls <= ceil(N/100) + 10 "
            f"= {limit} ({run.stripe_calls}), no finding ({run.findings_new})"
        )

        # Filtered: one PaymentIntent, then one order id, whatever the account's size.
        target = rows[n // 2]
        for label, filters in (
            ("one PaymentIntent", {"payment_intent": str(target["payment_intent_id"])}),
            ("one order id", {"order_id": str(target["external_id"])}),
        ):
            double.clear_requests_log()
            with app.app_context():
                t0 = time.perf_counter()
                one = run_reconciliation(db.session(), gateway(), filters, started_by="bench")
                took = time.perf_counter() - t0
            calls = len(double.requests_log())
            print(
                f"filtered by {label}: {took * 1000:.0f} ms, {one.stripe_calls} calls "
                f"({calls} in the double's log; goal <= 5), findings {one.findings_new}, "
                f"status {one.status.value}"
            )
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
