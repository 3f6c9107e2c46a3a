"""Fill a throw-away PostgreSQL database at production scale, with SQL (issue 15).

    .venv/bin/python bench/fill.py --stuck-distribution recent   # prints the URL, keeps it
    .venv/bin/python bench/fill.py --drop NAME                   # drops it again

`bench/pages.py` calls `create()` / `drop()` itself, so a page run cleans up
after itself; run this file alone to look at plans with psql.

What it makes (all with `generate_series`, a few minutes on 2 cores):
- 1,000,000 orders over two years, 4,642 of them stuck (the five reasons in
  turn, some with two reasons at once, a few paid inside the webhook grace
  window), placed `recent` (the newest), `old` (the oldest) or `uniform`;
- a payment per paid order (1M), 100,000 confirmed inventory reservations,
  10,000 SKUs and 1,000,000 ledger rows (150 items drift);
- 200,000 invoices (some failed or stuck), 1,000 sellers and 100,000 payouts
  (some ready), 300,000 webhook events (some failed), 2,000 coupons with
  100,000 reservations (some leaking), approvals, reconciliation findings;
- two years of job runs at each job's own interval (about 1.5M rows);
- 1,000,000 audit entries, chained exactly as the append path chains them
  (canonical form and hash built with the console's own code), with many
  actors, a rare one, and every action/outcome/target kind.

Bulk loading runs as the superuser with `session_replication_role = replica`
(no per-row triggers, no FK checks): the values the triggers would keep are
computed in SQL afterwards (inventory ledger totals, the audit chain head,
the orders' stuck facts of migration 0007).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from console.audit.chain import (  # noqa: E402
    GENESIS_HASH,
    canonical_json,
    display_columns,
    entry_hash,
    format_ts,
)
from console.db import utcnow  # noqa: E402

ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
STUCK = 4642
RARE_ACTOR = "rare.actor@example.test"

JOB_INTERVALS = {  # seconds, the jobs' own schedules (console/ops/jobs.py)
    "audit-checkpoint": 3600,
    "coupons-expire-reservations": 900,
    "integrations-deliver": 60,
    "invoices-retry-stuck": 900,
    "payouts-auto-release": 600,
    "payouts-resume": 600,
    "reconcile": 86400,
    "supplier-sync": 3600,
}


def db_url(name: str) -> str:
    return ADMIN.rsplit("/", 1)[0] + f"/{name}"


def stuck_rank_sql(distribution: str, n: int) -> str:
    """SQL expression of `i` (1..n): the rank of a stuck order, or NULL for the others."""
    if distribution == "recent":
        return f"CASE WHEN i > {n} - {STUCK * 10} AND ({n} - i) % 10 = 0 THEN ({n} - i) / 10 END"
    if distribution == "old":
        return f"CASE WHEN i <= {STUCK * 10} AND (i - 1) % 10 = 0 THEN (i - 1) / 10 END"
    step = n // STUCK
    return (
        f"CASE WHEN (i - 1) % {step} = 0 AND (i - 1) / {step} < {STUCK} THEN (i - 1) / {step} END"
    )


ORDER_COLUMNS = (
    "id, external_id, status, customer_email, amount, currency, amount_refunded, "
    "payment_intent_id, checkout_session_id, listing_id, seller_email, amount_mismatch, "
    "paid_at, confirmed_at, webhook_processed_at, supplier_id, supplier_forwarded_at, "
    "completed_at, created_at, updated_at"
)
# r: stuck rank (NULL = not stuck); r % 5 picks the reason; b = i % 100 the normal status.
ORDER_VALUES = """
    i, 'ORD-' || lpad(i::text, 7, '0'),
    CASE
      WHEN r IS NOT NULL THEN (ARRAY['confirmed','paid','confirmed','processing','pending'])
                              [r % 5 + 1]
      WHEN b < 80 THEN 'completed' WHEN b < 87 THEN 'delivered'
      WHEN b < 90 THEN 'fulfilled' WHEN b < 94 THEN 'cancelled'
      WHEN b < 97 THEN 'refunded' WHEN b = 97 THEN 'processing'
      WHEN b = 98 THEN 'confirmed' ELSE 'pending' END,
    'customer' || (i % 200000) || '@example.test',
    1000 + (i * 37) % 90000, 'eur', 0,
    'pi_' || i, 'cs_' || i, 'LST-' || (i % 5000), 'seller' || (i % 1000) || '@example.test',
    (r IS NOT NULL AND (r % 5 = 0 OR (r % 5 = 1 AND r % 35 = 1))),
    CASE WHEN (r IS NULL AND b NOT IN (90, 91, 92, 93, 99)) OR r % 5 <> 4
         THEN created + interval '1 minute' END,
    CASE WHEN (r IS NULL AND b < 99 AND b NOT IN (90, 91, 92, 93)) OR r % 5 IN (0, 2, 3)
         THEN created + interval '2 minutes' END,
    CASE WHEN (r IS NULL AND b NOT IN (90, 91, 92, 93, 99)) OR r % 5 IN (0, 2, 3)
         THEN created + interval '2 minutes' END,
    NULL::int,
    CASE WHEN r IS NULL AND b < 98 AND b NOT IN (90, 91, 92, 93)
         THEN created + interval '1 hour' END,
    CASE WHEN r IS NULL AND b < 80 THEN created + interval '5 days' END,
    created,
    created + CASE WHEN r IS NULL AND b < 80 THEN interval '5 days' ELSE interval '3 minutes' END
"""


def fill_orders(
    cur: psycopg.Cursor, n: int, distribution: str, *, previous: str | None = None
) -> None:
    """Orders with their payments and reservations; or, given the `previous`
    distribution of a filled database, move its stuck rows to `distribution`
    (only the rows of either set are rewritten: a minute, not a refill)."""
    rank = stuck_rank_sql(distribution, n)
    only = (
        ""
        if previous is None
        else f"WHERE ({stuck_rank_sql(previous, n)}) IS NOT NULL OR ({rank}) IS NOT NULL"
    )
    cur.execute("DROP TABLE IF EXISTS o_plan")
    cur.execute(
        f"""
        CREATE TEMP TABLE o_plan AS
        SELECT i, {rank} AS r, i % 100 AS b,
               now() - interval '730 days' * ({n} - i)::float8 / {n} AS created
        FROM generate_series(1, {n}) AS i {only}
        """
    )
    cur.execute("CREATE UNIQUE INDEX ON o_plan (i)")
    if previous is None:
        cur.execute(f"INSERT INTO orders ({ORDER_COLUMNS}) SELECT {ORDER_VALUES} FROM o_plan")
    else:
        cur.execute(
            f"UPDATE orders o SET ({ORDER_COLUMNS}) = (SELECT {ORDER_VALUES}) "
            "FROM o_plan WHERE o_plan.i = o.id"
        )
        cur.execute("DELETE FROM payments p USING o_plan WHERE p.order_id = o_plan.i")
        cur.execute("DELETE FROM inventory_reservations r USING o_plan WHERE r.order_id = o_plan.i")
    # A few orders paid inside the webhook grace window: not stuck yet.
    cur.execute(
        f"""
        UPDATE orders SET status = 'paid', webhook_processed_at = NULL,
            paid_at = now() - interval '2 minutes', confirmed_at = NULL,
            supplier_forwarded_at = NULL, completed_at = NULL
        WHERE id > {n} - 200 AND id % 20 = 3
        """
    )
    cur.execute(f"SELECT setval('orders_id_seq', {n})")
    cur.execute(
        """
        INSERT INTO payments (id, payment_intent_id, order_id, charge_id, amount, currency, status,
            amount_refunded, verified_amount, verified_currency, verified_at, created_at,
            updated_at)
        SELECT o.id, o.payment_intent_id, o.id, 'ch_' || o.id, o.amount, o.currency,
            CASE WHEN o.status = 'refunded' THEN 'refunded'
                 WHEN o.status = 'pending' AND p.r IS NULL THEN 'requires_payment_method'
                 ELSE 'succeeded' END,
            CASE o.status WHEN 'refunded' THEN o.amount ELSE 0 END,
            o.amount, o.currency, o.created_at + interval '1 minute', o.created_at, o.updated_at
        FROM orders o JOIN o_plan p ON p.i = o.id
        WHERE o.status <> 'cancelled' AND (o.status <> 'pending' OR p.r IS NOT NULL
            OR o.id % 2 = 0)
        """
    )
    cur.execute("SELECT setval('payments_id_seq', (SELECT max(id) FROM payments))")
    if previous is None:
        cur.execute(
            """
        INSERT INTO inventory_items (id, sku, name, stock_count, ledger_total, updated_at)
        SELECT i, 'SKU-' || lpad(i::text, 5, '0'), 'Item ' || i, 0, 0, now()
        FROM generate_series(1, 10000) AS i
        """
        )
        cur.execute("SELECT setval('inventory_items_id_seq', 10000)")
    cur.execute(
        """
        INSERT INTO inventory_reservations (id, external_id, order_id, sku, quantity, status,
            created_at, expires_at, confirmed_at)
        SELECT i, 'RSV-' || i, i, 'SKU-' || lpad((1 + i % 10000)::text, 5, '0'), 1,
            CASE WHEN r % 5 = 2 THEN 'reserved' ELSE 'confirmed' END,
            created, created + interval '30 minutes',
            CASE WHEN r % 5 = 2 THEN NULL ELSE created + interval '2 minutes' END
        FROM o_plan WHERE i % 10 = 0 OR r % 5 = 2
        """
    )
    cur.execute(
        "SELECT setval('inventory_reservations_id_seq', (SELECT max(id) FROM inventory_reservations))"
    )


def fill_rest(cur: psycopg.Cursor, n: int) -> None:
    cur.execute(
        """
        INSERT INTO inventory_ledger (id, sku, quantity_change, reason, reference_id, created_at)
        SELECT i, 'SKU-' || lpad((1 + i % 10000)::text, 5, '0'),
            CASE WHEN i % 4 = 0 THEN 5 ELSE -1 END,
            CASE WHEN i % 4 = 0 THEN 'restock' ELSE 'sale' END,
            'ORD-' || i, now() - interval '730 days' * (1000000 - i)::float8 / 1000000
        FROM generate_series(1, 1000000) AS i
        """
    )
    cur.execute("SELECT setval('inventory_ledger_id_seq', 1000000)")
    cur.execute(
        """
        UPDATE inventory_items it SET ledger_total = t.total,
            stock_count = t.total + CASE WHEN it.id % 67 = 0 THEN 3 ELSE 0 END,
            drift_since = CASE WHEN it.id % 67 = 0 THEN now() - interval '1 day' * (it.id % 30) END
        FROM (SELECT sku, sum(quantity_change) AS total FROM inventory_ledger GROUP BY sku) t
        WHERE t.sku = it.sku
        """
    )
    cur.execute(
        """
        INSERT INTO invoices (id, external_id, order_id, amount, currency, status, attempts,
            next_attempt_at, last_error, created_at, updated_at)
        SELECT i, 'INV-' || i, i * 5, 1000 + i % 5000, 'eur',
            CASE WHEN i % 500 = 1 THEN 'failed' WHEN i % 1000 = 2 THEN 'draft'
                 WHEN i % 97 = 3 THEN 'void' ELSE 'transmitted' END,
            CASE WHEN i % 500 = 1 THEN 3 ELSE 1 END,
            CASE WHEN i % 1000 = 2 THEN now() + interval '1 hour' END,
            CASE WHEN i % 500 = 1 THEN 'supplier portal answered 503' END,
            now() - interval '730 days' * (200000 - i)::float8 / 200000,
            now() - interval '730 days' * (200000 - i)::float8 / 200000 + interval '1 minute'
        FROM generate_series(1, 200000) AS i
        """
    )
    cur.execute("SELECT setval('invoices_id_seq', 200000)")
    cur.execute(
        """
        INSERT INTO sellers (id, email, name, stripe_account_id, transfers_enabled, created_at)
        SELECT i, 'seller' || i || '@example.test', 'Seller ' || i, 'acct_' || i, i % 20 <> 0,
            now() - interval '800 days'
        FROM generate_series(1, 1000) AS i
        """
    )
    cur.execute("SELECT setval('sellers_id_seq', 1000)")
    cur.execute(
        f"""
        INSERT INTO seller_payouts (id, external_id, order_id, seller_id, amount, currency,
            destination_account, status, protected, admin_hold, dispute_status,
            protection_ends_at, delivery_confirmed_at, stripe_transfer_id, released_at,
            created_at, updated_at)
        SELECT i, 'PO-' || i, 1 + (i * 10) % {n}, 1 + i % 1000, 900 + i % 9000, 'eur',
            'acct_' || (1 + i % 1000),
            CASE WHEN i % 100 < 2 THEN 'held' WHEN i % 100 = 2 THEN 'eligible'
                 ELSE 'released' END,
            i % 2 = 0, i % 100 = 1 AND i % 7 = 0, CASE WHEN i % 333 = 0 THEN 'open' ELSE 'none' END,
            now() - interval '1 day' * (i % 40 - 20),
            CASE WHEN i % 3 <> 0 THEN now() - interval '25 days' END,
            CASE WHEN i % 100 > 2 THEN 'tr_' || i END,
            CASE WHEN i % 100 > 2 THEN now() - interval '730 days' * (100000 - i)::float8 / 100000
            END,
            now() - interval '730 days' * (100000 - i)::float8 / 100000,
            now() - interval '730 days' * (100000 - i)::float8 / 100000
        FROM generate_series(1, 100000) AS i
        """
    )
    cur.execute("SELECT setval('seller_payouts_id_seq', 100000)")
    cur.execute(
        """
        INSERT INTO webhook_events (id, event_id, type, api_version, livemode, object_id,
            raw_body, status, attempts, deliveries, last_error, stripe_created_at, received_at,
            processed_at)
        SELECT i, 'evt_' || i, 'payment_intent.succeeded', '2025-01-01', false, 'pi_' || (i * 3),
            '{"id": "evt_' || i || '", "object": "event"}',
            CASE WHEN i % 5000 = 7 THEN 'failed' ELSE 'processed' END,
            1, 1, CASE WHEN i % 5000 = 7 THEN 'order not found' END,
            now() - interval '730 days' * (300000 - i)::float8 / 300000,
            now() - interval '730 days' * (300000 - i)::float8 / 300000,
            CASE WHEN i % 5000 = 7 THEN NULL
                 ELSE now() - interval '730 days' * (300000 - i)::float8 / 300000 END
        FROM generate_series(1, 300000) AS i
        """
    )
    cur.execute("SELECT setval('webhook_events_id_seq', 300000)")
    cur.execute(
        """
        INSERT INTO coupons (id, code, max_redemptions, redeemed_count, reserved_count, created_at)
        SELECT i, 'CODE' || i, 1000, 40, 0, now() - interval '400 days'
        FROM generate_series(1, 2000) AS i
        """
    )
    cur.execute("SELECT setval('coupons_id_seq', 2000)")
    cur.execute(
        f"""
        INSERT INTO coupon_reservations (id, coupon_id, order_id, status, created_at, expires_at,
            external_id)
        SELECT i, 1 + i % 2000, 1 + (i * 7) % {n},
            CASE WHEN i % 1000 = 5 OR i % 500 = 9 THEN 'reserved' ELSE 'redeemed' END,
            now() - interval '700 days' * (100000 - i)::float8 / 100000,
            CASE WHEN i % 1000 = 5 THEN now() - interval '2 days'
                 ELSE now() + interval '1 day' END,
            'CR-' || i
        FROM generate_series(1, 100000) AS i
        """
    )
    cur.execute("SELECT setval('coupon_reservations_id_seq', 100000)")
    cur.execute(
        """
        UPDATE coupons c SET reserved_count = h.held
        FROM (SELECT coupon_id, count(*) AS held FROM coupon_reservations
              WHERE status = 'reserved' GROUP BY coupon_id) h
        WHERE h.coupon_id = c.id AND c.id % 50 <> 0
        """
    )
    cur.execute(
        """
        INSERT INTO approvals (id, kind, payload, payload_hash, status, requested_by_sub,
            requested_by_email, request_reason, requested_at, decided_by_sub, decided_at)
        SELECT i, 'payout_release', jsonb_build_object('payout_ids', jsonb_build_array(i)),
            md5(i::text) || md5(i::text), CASE WHEN i % 25 = 0 THEN 'pending' ELSE 'executed' END,
            'sub-admin-1', 'admin@example.test', 'Weekly payouts for seller ' || i,
            now() - interval '1 hour' * (2000 - i),
            CASE WHEN i % 25 <> 0 THEN 'sub-admin-2' END,
            CASE WHEN i % 25 <> 0 THEN now() - interval '1 hour' * (2000 - i) END
        FROM generate_series(1, 2000) AS i
        """
    )
    cur.execute("SELECT setval('approvals_id_seq', 2000)")
    cur.execute(
        f"""
        INSERT INTO reconciliation_findings (id, fingerprint, type, severity, status, explanation,
            suggested_action, order_id, payment_intent_id, details, first_seen_at, last_seen_at)
        SELECT i, 'fp-' || i,
            (ARRAY['amount_mismatch','order_paid_no_stripe','refund_not_reflected'])[1 + i % 3],
            (ARRAY['critical','high','medium','warning'])[1 + i % 4],
            CASE WHEN i % 40 = 0 THEN 'open' ELSE 'fixed' END,
            'The order says paid; Stripe has no succeeded PaymentIntent.', NULL,
            1 + (i * 13) % {n}, 'pi_' || (1 + (i * 13) % {n}), '{{}}',
            now() - interval '1 hour' * (4000 - i), now() - interval '1 hour' * (4000 - i)
        FROM generate_series(1, 4000) AS i
        """
    )
    cur.execute("SELECT setval('reconciliation_findings_id_seq', 4000)")
    for job, every in JOB_INTERVALS.items():
        cur.execute(
            """
            INSERT INTO job_runs (job, status, started_at, finished_at, scanned, acted, errors,
                details)
            SELECT %(job)s, CASE WHEN k %% 100 = 7 THEN 'failed' ELSE 'succeeded' END,
                now() - make_interval(secs => %(every)s * k + 5),
                now() - make_interval(secs => %(every)s * k + 3), 100, k %% 3,
                CASE WHEN k %% 100 = 7 THEN 1 ELSE 0 END, '{}'
            FROM generate_series(730 * 86400 / %(every)s, 0, -1) AS k
            """,
            {"job": job, "every": every},
        )


ACTORS = [(f"sub-staff-{i}", f"staff{i}@example.test") for i in range(40)]
ACTIONS = [
    ("orders:note:add", "order"),
    ("payouts:hold", "payout"),
    ("audit:log:view", None),
    ("invoices:retry", "invoice"),
    ("webhooks:replay", "webhook_event"),
    ("coupons:release", "coupon"),
]


def fill_audit(cur: psycopg.Cursor, n: int) -> None:
    start = utcnow() - timedelta(days=730)
    step = timedelta(days=730) / n
    prev = GENESIS_HASH
    with cur.copy(
        "COPY audit_entries (seq, ts, actor_sub, actor_email, actor_roles, action, "
        "target_type, target_id, outcome, reason, ticket, request_id, ip, details, prev_hash, "
        "hash, canonical) FROM STDIN"
    ) as copy:
        for seq in range(1, n + 1):
            ts = start + step * seq
            if seq % 33333 == 0:
                sub, email = "sub-rare-1", RARE_ACTOR
            else:
                a = ACTORS[(seq * seq) % 7 if seq % 3 else seq % len(ACTORS)]
                sub, email = a
            action, ttype = ACTIONS[seq % len(ACTIONS)]
            tid = f"T-{seq % 50000}" if ttype else None
            outcome = "denied" if seq % 97 == 0 else ("failed" if seq % 211 == 0 else "success")
            body = {
                "_prev_hash": prev,
                "_seq": seq,
                "action": action,
                "actor": {"email": email, "roles": ["support"], "sub": sub},
                "after": None,
                "before": None,
                "details": {},
                "outcome": outcome,
                "params": {},
                "reason": f"Customer called about {seq}",
                "request": {"id": uuid.UUID(int=seq).hex, "ip": "10.0.0.1", "user_agent": None},
                "target": {"id": tid, "type": ttype},
                "ticket": None,
                "ts": format_ts(ts),
            }
            canonical = canonical_json(body)
            digest = entry_hash(canonical)
            c = display_columns(body)  # the columns exactly as the append trigger derives them
            copy.write_row(
                (seq, ts, sub, email, '["support"]', action, ttype, tid, outcome, c["reason"],
                 None, c["request_id"], c["ip"], json.dumps(c["details"]), prev, digest,
                 canonical)
            )  # fmt: skip
            prev = digest
    # What the append trigger keeps for time windows (migration 0012): times in seq order.
    cur.execute(
        "UPDATE audit_chain_head SET last_seq = %s, last_hash = %s, max_ts = %s, "
        "max_disorder = interval '0'",
        (n, prev, start + step * n),
    )


def backfill_stuck_facts(cur: psycopg.Cursor, *, planned_only: bool = False) -> None:
    """What migration 0007's triggers keep, computed once (triggers are off while loading)."""
    cur.execute(
        "SELECT count(*) FROM information_schema.columns "
        "WHERE table_name = 'orders' AND column_name = 'holds_stock'"
    )
    row = cur.fetchone()
    if not row or not row[0]:
        return  # the schema before 0007 (a "before" run)
    scope = " AND o.id IN (SELECT i FROM o_plan)" if planned_only else ""
    if planned_only:
        cur.execute(
            "UPDATE orders o SET holds_stock = false, payment_succeeded = false "
            "FROM o_plan WHERE o_plan.i = o.id"
        )
    cur.execute(
        "UPDATE orders o SET holds_stock = true FROM inventory_reservations r "
        f"WHERE r.order_id = o.id AND r.status = 'reserved'{scope}"
    )
    cur.execute(
        "UPDATE orders o SET payment_succeeded = true FROM payments p "
        f"WHERE p.order_id = o.id AND p.status = 'succeeded'{scope}"
    )


STATE = "bench/fill.py: stuck rows "


def record_distribution(name: str, distribution: str) -> None:
    """Note on the database where its stuck rows are (a moved database stays moved)."""
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f"COMMENT ON DATABASE \"{name}\" IS '{STATE}{distribution}'")


def current_distribution(name: str) -> str | None:
    """Where the stuck rows of a filled database are now (None: not noted)."""
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (name,),
        ).fetchone()
    note = row[0] if row else None
    return note[len(STATE) :] if note and note.startswith(STATE) else None


def move_stuck(name: str, previous: str, distribution: str, orders: int = 1_000_000) -> None:
    """Place the stuck orders of a filled database by another distribution."""
    noted = current_distribution(name)
    if noted is not None and noted != previous:
        raise SystemExit(f"{name} has its stuck rows {noted}, not {previous}")
    t0 = time.perf_counter()
    with psycopg.connect(db_url(name)) as conn, conn.cursor() as cur:
        cur.execute("SET session_replication_role = replica")
        fill_orders(cur, orders, distribution, previous=previous)
        backfill_stuck_facts(cur, planned_only=True)
        conn.commit()
    with psycopg.connect(db_url(name), autocommit=True) as conn:
        for table in ("orders", "payments", "inventory_reservations"):
            conn.execute(f"VACUUM (ANALYZE) {table}")
    record_distribution(name, distribution)
    print(
        f"  fill: stuck rows moved {previous} -> {distribution} in "
        f"{time.perf_counter() - t0:.1f} s",
        flush=True,
    )


def create(distribution: str = "recent", orders: int = 1_000_000, audit: int = 1_000_000) -> str:
    """A new database, migrated and filled; returns its name."""
    name = f"console_bench_pages_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = db_url(name)
    try:
        from alembic import command

        from console.cli import alembic_config

        command.upgrade(
            alembic_config(url.replace("postgresql://", "postgresql+psycopg://", 1)), "head"
        )
        steps: list[tuple[str, Callable[[psycopg.Cursor[Any]], None]]] = [
            ("orders, payments, reservations", lambda c: fill_orders(c, orders, distribution)),
            ("ledger, invoices, payouts, webhooks, coupons, jobs", lambda c: fill_rest(c, orders)),
            ("audit entries", lambda c: fill_audit(c, audit)),
            ("stuck facts", backfill_stuck_facts),
        ]
        with psycopg.connect(url) as conn, conn.cursor() as cur:
            cur.execute("SET session_replication_role = replica")
            cur.execute("SET maintenance_work_mem = '256MB'")
            for label, step in steps:
                t0 = time.perf_counter()
                step(cur)
                print(f"  fill: {label} in {time.perf_counter() - t0:.1f} s", flush=True)
            conn.commit()
        t0 = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE)")
        print(f"  fill: vacuum analyze in {time.perf_counter() - t0:.1f} s", flush=True)
        record_distribution(name, distribution)
    except BaseException:
        drop(name)
        raise
    return name


def drop(name: str) -> None:
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--stuck-distribution", choices=("recent", "old", "uniform"), default="recent"
    )
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--audit", type=int, default=1_000_000)
    parser.add_argument("--drop", metavar="NAME", help="drop a database this script made")
    args = parser.parse_args()
    if args.drop:
        if not args.drop.startswith("console_bench_pages_"):
            parser.error("only drops databases it made (console_bench_pages_*)")
        drop(args.drop)
        return
    t0 = time.perf_counter()
    name = create(args.stuck_distribution, args.orders, args.audit)
    print(f"filled {name} in {time.perf_counter() - t0:.0f} s: {db_url(name)}")
    print(f"drop it with: .venv/bin/python bench/fill.py --drop {name}")


if __name__ == "__main__":
    main()
