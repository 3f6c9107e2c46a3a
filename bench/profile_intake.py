"""Profile webhook intake in one process: CPU per event, and where it goes.

    .venv/bin/python bench/profile_intake.py --events 2000 [--top 30]

Posts signed `payment_intent.succeeded` events (the shape bench/webhooks.py
sends) through the Flask test client to the real app on a throw-away
database, and reports wall and CPU time per event (the machine's load moves
the first, hardly the second), the statements per event (from PostgreSQL's
statistics) and cProfile's top functions by cumulative time. Bench-only.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
import uuid
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.webhooks import ADMIN, SECRET, payment_intent_event, sign  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--sort", default="cumulative", help="cProfile sort key (tottime...)")
    parser.add_argument("--no-profile", action="store_true", help="time only (no cProfile)")
    args = parser.parse_args()
    name = f"console_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN.rsplit("/", 1)[0]
    url = base.replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    try:
        from alembic import command

        from console.cli import alembic_config

        command.upgrade(alembic_config(url), "head")
        os.environ.update(
            CONSOLE_ENV="test",
            DATABASE_URL=url,
            SECRET_KEY="bench-secret-key-that-is-long-enough-0123456789abcdef",
            OIDC_ISSUER="http://127.0.0.1:9",
            OIDC_CLIENT_ID="bench",
            OIDC_CLIENT_SECRET="bench",
            ROLE_MAP="admins=admin",
            STRIPE_API_KEY="sk_test_bench",
            STRIPE_WEBHOOK_SECRET=SECRET,
            STRIPE_API_BASE="http://127.0.0.1:9",
            AUDIT_SIGNING_KEY="",
        )
        import logging

        from console import create_app

        app = create_app()
        logging.getLogger("console.access").setLevel(logging.WARNING)
        client = app.test_client()
        events = [payment_intent_event(i, "p" + uuid.uuid4().hex[:4]) for i in range(args.events)]
        for _, body in events[:50]:  # warm up
            client.post(
                "/webhooks/stripe",
                data=body,
                headers={"Stripe-Signature": sign(body), "Content-Type": "application/json"},
            )
        with psycopg.connect(base + f"/{name}", autocommit=True) as conn:
            conn.execute("SELECT pg_stat_reset()")
            time.sleep(0.6)  # the statistics collector's interval
            before = conn.execute(
                "SELECT xact_commit, tup_inserted, tup_updated, tup_fetched FROM pg_stat_database "
                "WHERE datname = current_database()"
            ).fetchone()
            profiler = cProfile.Profile(time.process_time)  # CPU, not waiting
            wall, cpu = time.perf_counter(), time.process_time()
            if not args.no_profile:
                profiler.enable()
            for _, body in events[50:]:
                resp = client.post(
                    "/webhooks/stripe",
                    data=body,
                    headers={"Stripe-Signature": sign(body), "Content-Type": "application/json"},
                )
                assert resp.status_code == 200, resp.data
            profiler.disable()
            n = len(events) - 50
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            time.sleep(0.6)
            after = conn.execute(
                "SELECT xact_commit, tup_inserted, tup_updated, tup_fetched FROM pg_stat_database "
                "WHERE datname = current_database()"
            ).fetchone()
        print(
            f"{n} events: wall {wall / n * 1000:.2f} ms/event, CPU {cpu / n * 1000:.2f} ms/event "
            f"(this process, profiler {'off' if args.no_profile else 'on'}); load average {os.getloadavg()[0]:.2f}"
        )
        if before and after:
            print(
                "per event: commits {:.2f}, rows inserted {:.2f}, updated {:.2f}".format(
                    *((a - b) / n for a, b in zip(after[:3], before[:3], strict=True))
                )
            )
        if not args.no_profile:
            pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
