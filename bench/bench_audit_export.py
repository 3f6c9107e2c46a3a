"""Benchmark: audit export and offline verify, beside `psql \\copy` of the same rows.

    .venv/bin/python bench/bench_audit_export.py --entries 1000000

Creates its own PostgreSQL database (dropped at the end), fills it with N
chained entries (COPY, canonical forms built with the console's own code),
then times, in the same run:
  - psql \\copy of (canonical, hash) ordered by seq  (the peer);
  - `write_bundle` (JSONL) through SQLAlchemy, with resident memory sampled;
  - `console.audit.verify.verify` on the bundle.
Targets (issue 4): export >= 100,000 entries/s and >= 0.5x psql, memory
growth < 50 MB, verify >= 200,000 entries/s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from console.audit.chain import GENESIS_HASH, canonical_json, entry_hash, format_ts  # noqa: E402
from console.db import utcnow  # noqa: E402

ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def fill(url: str, n: int) -> None:
    start = utcnow() - timedelta(days=30)
    prev = GENESIS_HASH
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        # Bulk load as the superuser: skip the per-row append trigger (it would check and
        # move the head a million times) and the head's guard; the rows are built exactly
        # as the append path builds them.
        cur.execute("SET session_replication_role = replica")
        with cur.copy(
            "COPY audit_entries (seq, ts, actor_sub, actor_email, actor_roles, action, "
            "target_type, target_id, outcome, reason, details, prev_hash, hash, canonical) "
            "FROM STDIN"
        ) as copy:
            for seq in range(1, n + 1):
                ts = start + timedelta(milliseconds=seq)
                body = {
                    "_prev_hash": prev,
                    "_seq": seq,
                    "action": "orders:note:add",
                    "actor": {
                        "email": "support@example.test",
                        "roles": ["support"],
                        "sub": "sub-1",
                    },
                    "after": {"notes": 1},
                    "before": {"notes": 0},
                    "details": {},
                    "outcome": "success",
                    "params": {},
                    "reason": f"Customer called about order {seq}",
                    "request": {"id": uuid.UUID(int=seq).hex, "ip": "10.0.0.1", "user_agent": None},
                    "target": {"id": f"ORD-{seq:07d}", "type": "order"},
                    "ticket": None,
                    "ts": format_ts(ts),
                }
                canonical = canonical_json(body)
                digest = entry_hash(canonical)
                copy.write_row(
                    (
                        seq,
                        ts,
                        "sub-1",
                        "support@example.test",
                        '["support"]',
                        "orders:note:add",
                        "order",
                        f"ORD-{seq:07d}",
                        "success",
                        body["reason"],
                        "{}",
                        prev,
                        digest,
                        canonical,
                    )
                )
                prev = digest
        cur.execute(
            "UPDATE audit_chain_head SET last_seq = %s, last_hash = %s, max_ts = %s, "
            "max_disorder = interval '0'",  # times in seq order (migration 0012)
            (n, prev, start + timedelta(milliseconds=n)),
        )
        conn.commit()
        with conn.cursor() as c2:
            c2.execute("ANALYZE audit_entries")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.entries
    name = f"console_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN.rsplit("/", 1)[0] + f"/{name}"
    sa_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        from alembic import command

        from console.cli import alembic_config

        command.upgrade(alembic_config(sa_url), "head")
        t0 = time.perf_counter()
        fill(url, n)
        print(f"filled {n:,} entries in {time.perf_counter() - t0:.1f} s")

        with tempfile.TemporaryDirectory() as tmp:
            peer_file = Path(tmp) / "copy.txt"
            t0 = time.perf_counter()
            subprocess.run(
                [
                    "psql",
                    url,
                    "-q",
                    "-c",
                    "\\copy (SELECT canonical, hash FROM audit_entries ORDER BY seq) "
                    f"TO '{peer_file}'",
                ],
                check=True,
            )
            peer = time.perf_counter() - t0

            os.environ.update(CONSOLE_ENV="test", DATABASE_URL=sa_url)
            from console import create_app, db
            from console.audit.export import load_signing_key, write_bundle
            from console.audit.verify import verify
            from console.audit.views import filtered

            app = create_app()
            with app.app_context():
                key = load_signing_key(app.config["SETTINGS"], tmp)
                stmt, used, _ = filtered({})
                base = rss_mb()
                peak = [base]
                done = threading.Event()

                def sample() -> None:
                    while not done.is_set():
                        peak[0] = max(peak[0], rss_mb())
                        time.sleep(0.05)

                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()
                t0 = time.perf_counter()
                bundle = write_bundle(
                    db.session(),
                    stmt,
                    out_dir=Path(tmp) / "bundle",
                    fmt="jsonl",
                    filters=used,
                    exporter={"sub": "bench"},
                    key=key,
                )
                export = time.perf_counter() - t0
                done.set()
                sampler.join()
                assert bundle.manifest["count"] == n
            t0 = time.perf_counter()
            pin = bundle.manifest["public_key_sha256"]  # the bench signed it: it knows the key
            count = verify(Path(tmp) / "bundle", fingerprint=pin).count
            check = time.perf_counter() - t0
            assert count == n

        print(f"psql \\copy (peer): {n / peer:>12,.0f} entries/s  ({peer:.2f} s)")
        print(
            f"export (console):  {n / export:>12,.0f} entries/s  ({export:.2f} s)  "
            f"= {peer / export:.2f}x psql"
        )
        print(f"export memory growth: {peak[0] - base:.1f} MB (peak RSS {peak[0]:.0f} MB)")
        print(f"verify:            {n / check:>12,.0f} entries/s  ({check:.2f} s)")
        print("targets: export >= 100,000/s and >= 0.5x psql; growth < 50 MB; verify >= 200,000/s")
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
