"""Profile webhook intake in one process: CPU per event, and where it goes.

    .venv/bin/python bench/profile_intake.py --events 2000 [--top 30]

Calls the real app's WSGI callable (what gunicorn calls, with the environ
it builds; no test client in between) with signed `payment_intent.succeeded`
events (the shape bench/webhooks.py sends) on a throw-away database, and
the bare verify-only peer (bench/bare_webhook.py) the same way. Reports
wall and CPU time per event for both (the machine's load moves the first,
hardly the second), the statements per event (from PostgreSQL's statistics)
and cProfile's top functions. Bench-only.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.webhooks import ADMIN, SECRET, payment_intent_event, sign  # noqa: E402


def call(wsgi: Any, body: bytes) -> str:
    """One delivery through a WSGI callable, as gunicorn's worker hands it over."""
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/webhooks/stripe",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json; charset=utf-8",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        "HTTP_STRIPE_SIGNATURE": sign(body),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    answer: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> None:
        answer.append(status)

    for _chunk in wsgi(environ, start_response):
        pass
    return answer[0]


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
        from bench.bare_webhook import app as bare
        from console import create_app

        os.environ.setdefault("STRIPE_WEBHOOK_SECRET", SECRET)
        app = create_app()
        # The access log line is part of every delivery's cost: formatted and
        # redacted by the console's own handler as under gunicorn, written to
        # /dev/null instead of this terminal.
        from console.logs import configure_logging

        devnull = open(os.devnull, "w")  # noqa: SIM115 (open for the whole run)
        configure_logging(os.environ.get("LOG_FORMAT", "json"), stream=devnull)
        events = [payment_intent_event(i, "p" + uuid.uuid4().hex[:4]) for i in range(args.events)]
        for _, body in events[:50]:  # warm up
            call(app, body)
        bare_cpu = time.process_time()
        for _, body in events[50:]:
            assert call(bare, body).startswith("200")
        bare_cpu = (time.process_time() - bare_cpu) / (len(events) - 50)
        with psycopg.connect(base + f"/{name}", autocommit=True) as conn:
            conn.execute("SELECT pg_stat_reset()")
            time.sleep(1.5)  # backends report statistics at most once a second
            before = conn.execute(
                "SELECT xact_commit, tup_inserted, tup_updated, tup_fetched FROM pg_stat_database "
                "WHERE datname = current_database()"
            ).fetchone()
            profiler = cProfile.Profile(time.process_time)  # CPU, not waiting
            wall, cpu = time.perf_counter(), time.process_time()
            if not args.no_profile:
                profiler.enable()
            for _, body in events[50:]:
                status = call(app, body)
                assert status.startswith("200"), status
            profiler.disable()
            n = len(events) - 50
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            time.sleep(1.5)
            stored = conn.execute("SELECT count(*) FROM webhook_events").fetchone()
            after = conn.execute(
                "SELECT xact_commit, tup_inserted, tup_updated, tup_fetched FROM pg_stat_database "
                "WHERE datname = current_database()"
            ).fetchone()
        print(
            f"{n} events: wall {wall / n * 1000:.2f} ms/event, CPU {cpu / n * 1000:.2f} ms/event "
            f"(this process, profiler {'off' if args.no_profile else 'on'}); load average {os.getloadavg()[0]:.2f}"
        )
        print(f"bare verify-only peer, same calls: CPU {bare_cpu * 1000:.2f} ms/event")
        print(f"rows stored: {stored[0] if stored else 0} of {len(events)} events posted")
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
