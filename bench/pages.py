"""Benchmark: the console's pages at a million rows, beside Flask-Admin (issue 15).

    .venv/bin/python bench/pages.py                      # fill, measure, drop (~15 min)
    .venv/bin/python bench/pages.py --db NAME --rounds 50   # reuse a bench/fill.py database

The console runs in this process through the Flask test client (server time
in-process, as the issue measured), logged in as an admin through the real
OIDC flow: oauth2-mock-server (devtools.idp.MockIdP), /login -> the IdP's
/authorize -> /auth/callback. The peer, a Flask-Admin 2.x `ModelView` per
table (page size 50, its defaults otherwise), runs in its own process on the
same database and answers the same rounds, interleaved page by page.

Per page: p50/p95/p99 server time, bytes, SQL statements per request; the
console/peer ratio at p95 (goal: console >= 5x faster, p95 <= 20 ms, <= 60 KB).
Stuck orders are measured with their rows recent, old and uniformly spread
(`bench/fill.py` moves them between runs), and every page to the deepest is
walked once per distribution. Then 10,000 mixed requests: resident memory after
1,000 and after 10,000 (goal: within 20 MB).

Bench-only dependencies: bench/requirements.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import fill  # noqa: E402

PAGE_SIZE = 50
NEXT = re.compile(r'href="\?([^"]*after=[^"]*)" rel="next"')


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def sa_url(name: str) -> str:
    return fill.db_url(name).replace("postgresql://", "postgresql+psycopg://", 1)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


class Counter:
    """SQL statements per request, from the engine's cursor events."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.n = 0

        def before(*_args: Any) -> None:
            self.n += 1

        event.listen(engine, "before_cursor_execute", before)


# --------------------------------------------------------------------------- peer


def peer_app(url: str) -> Any:
    """Flask-Admin over the console's tables: one ModelView each, page size 50."""
    from flask import Flask
    from flask_admin import Admin
    from flask_admin.contrib.sqla import ModelView
    from sqlalchemy import create_engine
    from sqlalchemy.orm import scoped_session, sessionmaker

    import console.models  # noqa: F401  (every model)
    from console.audit.models import AuditEntry
    from console.coupons.models import Coupon
    from console.inventory.models import InventoryItem
    from console.invoices.models import Invoice
    from console.orders.models import Order
    from console.payments.models import WebhookEvent
    from console.payouts.models import Approval, SellerPayout
    from console.reconciliation.models import ReconciliationFinding

    app = Flask("peer")
    app.config["SECRET_KEY"] = "peer"
    engine = create_engine(url, connect_args={"options": "-c jit=off"})
    session = scoped_session(sessionmaker(bind=engine))
    app.teardown_appcontext(lambda _exc: session.remove())
    admin = Admin(app, name="peer")

    def view(model: Any, endpoint: str, sort: str, **attrs: Any) -> None:
        cls = type(
            f"{endpoint}View",
            (ModelView,),
            {
                "page_size": PAGE_SIZE,
                "can_set_page_size": False,
                "column_default_sort": (sort, True),
                "named_filter_urls": True,
                **attrs,
            },
        )
        admin.add_view(cls(model, session, endpoint=endpoint, name=endpoint))

    view(
        Order,
        "orders",
        "created_at",
        column_filters=["status"],
        column_searchable_list=["external_id", "customer_email"],
    )
    view(AuditEntry, "audit", "seq", column_filters=["actor_email", "action", "outcome"])
    view(WebhookEvent, "webhooks", "received_at")
    view(Invoice, "invoices", "updated_at", column_filters=["status"])
    view(SellerPayout, "payouts", "protection_ends_at", column_filters=["status"])
    view(Approval, "approvals", "requested_at", column_filters=["status"])
    view(ReconciliationFinding, "findings", "last_seen_at", column_filters=["status"])
    view(InventoryItem, "inventory", "id")
    view(Coupon, "coupons", "id")
    app.config["PEER_ENGINE"] = engine
    return app


def peer_main(url: str) -> None:
    """Answer `path` lines on stdin with one JSON line of figures each."""
    app = peer_app(url)
    client = app.test_client()
    counter = Counter(app.config["PEER_ENGINE"])
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        path = line.strip()
        if not path:
            continue
        counter.n = 0
        c0, t0 = time.process_time(), time.perf_counter()
        resp = client.get(path)
        body = resp.get_data()
        ms = (time.perf_counter() - t0) * 1000
        cpu = (time.process_time() - c0) * 1000
        print(
            json.dumps(
                {
                    "ms": ms,
                    "cpu": cpu,
                    "status": resp.status_code,
                    "bytes": len(body),
                    "queries": counter.n,
                }
            ),
            flush=True,
        )


class Peer:
    def __init__(self, url: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--peer", url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        json.loads(self.proc.stdout.readline())

    def get(self, path: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(path + "\n")
        self.proc.stdin.flush()
        out: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return out

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


# --------------------------------------------------------------------------- console


class Console:
    """The real app, logged in as an admin through the mock IdP."""

    def __init__(self, url: str, workdir: str) -> None:
        import requests

        from console import create_app
        from console.db import get_db
        from devtools.idp import MockIdP

        self.idp = MockIdP.start()
        self.idp.add_identity(
            "admin", sub="sub-admin-1", email="admin@example.test", groups=["ops-admins"]
        )
        self.app = create_app(
            {
                "CONSOLE_ENV": "test",
                "DATABASE_URL": url,
                "AUDIT_CHECKPOINT_DIR": workdir,
                "SECRET_KEY": "bench-secret-key-that-is-long-enough-for-prod-0123456789",
                "OIDC_ISSUER": self.idp.issuer,
                "OIDC_CLIENT_ID": "console-bench",
                "OIDC_CLIENT_SECRET": "console-bench-secret",
                "ROLE_MAP": "ops-admins=admin",
                "STRIPE_API_KEY": "sk_test_console",
                "STRIPE_WEBHOOK_SECRET": "whsec_test_console",
                "STRIPE_API_BASE": "http://127.0.0.1:9",
                "STRIPE_TIMEOUT_SECONDS": "1",
                "AUDIT_SIGNING_KEY": "",
            }
        )
        from console.ops.gcpause import freeze_when_warm

        freeze_when_warm(self.app)  # as gunicorn.conf.py does in each worker
        self.client = self.app.test_client()
        resp = self.client.get("/login", query_string={"sso": 1, "login_hint": "admin"})
        assert resp.status_code == 302, resp.status_code
        answer = requests.get(resp.headers["Location"], allow_redirects=False, timeout=10)
        callback = urlsplit(answer.headers["Location"])
        done = self.client.get(f"{callback.path}?{callback.query}")
        assert done.status_code == 302, done.get_data(as_text=True)[:500]
        assert self.client.get("/").status_code == 200
        self.counter = Counter(get_db(self.app).engine)

    def get(self, path: str) -> dict[str, Any]:
        self.counter.n = 0
        c0, t0 = time.process_time(), time.perf_counter()
        resp = self.client.get(path)
        body = resp.get_data()
        ms = (time.perf_counter() - t0) * 1000
        return {
            "ms": ms,
            "cpu": (time.process_time() - c0) * 1000,
            "status": resp.status_code,
            "bytes": len(body),
            "queries": self.counter.n,
            "body": body,
        }

    def close(self) -> None:
        self.idp.stop()


def next_link(body: bytes) -> str | None:
    m = NEXT.search(body.decode())
    return f"?{unescape(m.group(1))}" if m else None


def walk(console: Console, first: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Every page of a list from the first to the deepest: figures and URLs."""
    figures, urls = [], []
    url: str | None = first
    while url:
        r = console.get(url)
        assert r["status"] == 200, (url, r["status"])
        figures.append(r)
        urls.append(url)
        nxt = next_link(r["body"])
        url = first.split("?", maxsplit=1)[0] + nxt if nxt else None
    return figures, urls


def sample_values(url: str) -> dict[str, str]:
    """A stuck order's email and id, a rare and a common actor, for searches and filters."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        row = conn.execute(
            "SELECT external_id, customer_email FROM orders WHERE status = 'processing' "
            "AND supplier_forwarded_at IS NULL ORDER BY id LIMIT 1"
        ).fetchone()
        assert row is not None
        return {"order": row[0], "email": row[1]}


def console_pages(samples: dict[str, str], deep: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Console page -> (URL, the peer page it is compared with)."""
    from console.orders.queries import REASONS

    pages = {
        "/ dashboard": ("/", ""),
        "stuck first": ("/orders/stuck", "/admin/orders/"),
    }
    for reason in REASONS:
        pages[f"stuck reason={reason}"] = (
            f"/orders/stuck?reason={reason}",
            "/admin/orders/?flt0_status_equals=PAID",
        )
    pages["stuck search (email)"] = (
        f"/orders/stuck?q={samples['email']}",
        f"/admin/orders/?search={samples['email']}",
    )
    pages["stuck search (order id)"] = (
        f"/orders/stuck?q={samples['order']}",
        f"/admin/orders/?search={samples['order']}",
    )
    pages["stuck sort=amount"] = ("/orders/stuck?sort=amount&dir=desc", "/admin/orders/?sort=4")
    pages["stuck page 12"] = (deep["stuck page 12"], "/admin/orders/?page=499")
    pages["stuck deepest page"] = (deep["stuck deepest"], "/admin/orders/?page=499")
    pages.update(
        {
            "/webhooks": ("/webhooks", "/admin/webhooks/"),
            "/invoices/failed": ("/invoices/failed", "/admin/invoices/?flt0_status_equals=FAILED"),
            "/payouts/ready": ("/payouts/ready", "/admin/payouts/?flt0_status_equals=HELD"),
            "/approvals": ("/approvals", "/admin/approvals/?flt0_status_equals=PENDING"),
            "/reconciliation": ("/reconciliation", "/admin/findings/?flt0_status_equals=OPEN"),
            "/inventory/drift": ("/inventory/drift", "/admin/inventory/"),
            "/coupons/leaks": ("/coupons/leaks", "/admin/coupons/"),
            "audit first": ("/audit", "/admin/audit/"),
            "audit actor=rare": (
                f"/audit?actor={fill.RARE_ACTOR}",
                f"/admin/audit/?flt0_actor_email_equals={fill.RARE_ACTOR}",
            ),
            "audit actor=common": (
                "/audit?actor=sub-staff-3",
                "/admin/audit/?flt0_actor_email_equals=staff3@example.test",
            ),
            "audit action": (
                "/audit?action=payouts:hold",
                "/admin/audit/?flt0_action_equals=payouts:hold",
            ),
            "audit action prefix": ("/audit?action=invoices:*", "/admin/audit/"),
            "audit target": (
                "/audit?target_type=order&target_id=T-1200",
                "/admin/audit/",
            ),
            "audit outcome=failed": (
                "/audit?outcome=failed",
                "/admin/audit/?flt0_outcome_equals=failed",
            ),
            "audit since/until": (
                "/audit?since=2026-01-01&until=2026-02-01",
                "/admin/audit/",
            ),
            "audit page 500": (deep["audit page 500"], "/admin/audit/?page=499"),
            # Not a goal: the least any list page costs (session, login, one indexed
            # query that finds nothing, the layout). A ratio to the peer can be no
            # better than the peer's time over this.
            "floor: an empty list": ("/invoices/failed?q=no-such-invoice", ""),
        }
    )
    return pages


def audit_page_500(console: Console) -> str:
    """The URL of page 500 of the audit log (a cursor signed the way the page signs it)."""
    from sqlalchemy import func, select

    from console import db
    from console.audit.models import AuditEntry
    from console.pagination import _encode

    with console.app.test_request_context():
        top = db.session().scalar(select(func.max(AuditEntry.seq))) or 0
        edge = top - 499 * PAGE_SIZE + 1
        return f"/audit?after={_encode('seq', edge, edge)}"


def measure(
    console: Console, peer: Peer, pages: dict[str, tuple[str, str]], rounds: int
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {
        k: {
            "ms": [],
            "cpu": [],
            "peer_ms": [],
            "peer_cpu": [],
            "bytes": 0,
            "queries": 0,
            "peer_bytes": 0,
            "peer_q": 0,
        }
        for k in pages
    }
    for _ in range(2):  # warm both
        for _name, (mine, theirs) in pages.items():
            console.get(mine)
            if theirs:
                peer.get(theirs)
    for _ in range(rounds):
        for name, (mine, theirs) in pages.items():
            r = console.get(mine)
            assert r["status"] in (200, 400), (name, r["status"])
            o = out[name]
            o["ms"].append(r["ms"])
            o["cpu"].append(r["cpu"])
            o["bytes"], o["queries"], o["status"] = r["bytes"], r["queries"], r["status"]
            if theirs:
                p = peer.get(theirs)
                assert p["status"] == 200, (theirs, p)
                o["peer_ms"].append(p["ms"])
                o["peer_cpu"].append(p["cpu"])
                o["peer_bytes"], o["peer_q"] = p["bytes"], p["queries"]
    return out


def report(title: str, results: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        f"### {title}",
        "",
        "Wall: server time in-process (includes waiting for PostgreSQL and for a CPU); "
        "CPU: this process's CPU time for the request (Python only), less sensitive to "
        "other load on the machine.",
        "",
        "| page | p50 | p95 | p99 | CPU p95 | KB | queries | peer p95 | peer CPU p95 | peer KB | "
        "peer queries | peer/console p95 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, o in results.items():
        p95 = pct(o["ms"], 95)
        if o["peer_ms"]:
            peer95 = pct(o["peer_ms"], 95)
            peer = (
                f"{peer95:.1f} | {pct(o['peer_cpu'], 95):.1f} | {o['peer_bytes'] / 1024:.1f} | "
                f"{o['peer_q']} | {peer95 / p95:.1f}x"
            )
        else:
            peer = "- | - | - | - | -"
        lines.append(
            f"| {name} | {pct(o['ms'], 50):.1f} | {p95:.1f} | {pct(o['ms'], 99):.1f} | "
            f"{pct(o['cpu'], 95):.1f} | {o['bytes'] / 1024:.1f} | {o['queries']} | {peer} |"
        )
    return lines


def walk_report(name: str, figures: list[dict[str, Any]]) -> str:
    ms = [f["ms"] for f in figures]
    kb = max(f["bytes"] for f in figures) / 1024
    q = max(f["queries"] for f in figures)
    return (
        f"| {name} | {len(figures)} | {statistics.median(ms):.1f} | {pct(ms, 95):.1f} | "
        f"{max(ms):.1f} | {kb:.1f} | {q} |"
    )


def memory(console: Console, urls: list[str], total: int) -> tuple[float, float]:
    at_1000 = 0.0
    for i in range(total):
        console.get(urls[i % len(urls)])
        if i + 1 == 1000:
            at_1000 = rss_mb()
    return at_1000, rss_mb()


def statements(console: Console, paths: list[str]) -> None:
    """Each SQL statement of a page with its time, slowest first (where a page's time goes)."""
    from sqlalchemy import event

    from console.db import get_db

    engine = get_db(console.app).engine
    timings: list[tuple[float, str]] = []
    started: list[float] = []

    def before(*_args: Any) -> None:
        started.append(time.perf_counter())

    def after(_conn: Any, _cursor: Any, statement: str, params: Any, *_rest: Any) -> None:
        ms = (time.perf_counter() - started.pop()) * 1000
        timings.append((ms, f"{statement} -- {params}"))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    for path in paths:
        console.get(path)
        timings.clear()
        r = console.get(path)
        print(f"== {path}: {r['ms']:.1f} ms, {r['bytes'] / 1024:.1f} KB, {r['queries']} queries")
        for ms, sql in sorted(timings, reverse=True)[:5]:
            print(f"  {ms:8.2f} ms  {' '.join(sql.split())[:600]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", help="a database bench/fill.py made (kept); else fill and drop")
    parser.add_argument(
        "--db-distribution",
        default="recent",
        help="where --db has its stuck rows, if fill.py did not note it on the database",
    )
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--distributions", default="recent,old,uniform")
    parser.add_argument("--requests", type=int, default=10_000, help="for the memory figure")
    parser.add_argument("--json", help="write the raw figures here")
    parser.add_argument("--statements", nargs="+", metavar="PATH", help="time each statement")
    parser.add_argument("--only", help="measure only the pages whose name matches this regex")
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        peer_main(args.peer)
        return
    if args.statements:
        assert args.db, "--statements needs --db"
        console = Console(sa_url(args.db), tempfile.mkdtemp(prefix="bench-pages-"))
        statements(console, args.statements)
        console.close()
        return
    name, made = args.db, False
    current = args.db_distribution
    if name is not None:
        # A database a run moved keeps its rows where that run left them: fill.py notes it.
        current = fill.current_distribution(name) or current
    if name is None:
        t0 = time.perf_counter()
        name, made, current = fill.create("recent"), True, "recent"
        print(f"filled {name} in {time.perf_counter() - t0:.0f} s", flush=True)
    url = sa_url(name)
    load = [os.getloadavg()]
    lines: list[str] = []
    raw: dict[str, Any] = {}
    workdir = tempfile.mkdtemp(prefix="bench-pages-")
    peer = Peer(url)
    console = Console(url, workdir)
    try:
        for i, dist in enumerate(args.distributions.split(",")):
            if dist != current:
                fill.move_stuck(name, current, dist)
                current = dist
            stuck_walk, stuck_urls = walk(console, "/orders/stuck")
            audit_walk, _ = walk(console, "/audit?outcome=failed")
            deep = {
                "stuck page 12": stuck_urls[min(11, len(stuck_urls) - 1)],
                "stuck deepest": stuck_urls[-1],
                "audit page 500": audit_page_500(console),
            }
            pages = console_pages(sample_values(url), deep)
            if i > 0:  # the other distributions change only the stuck queue and the dashboard
                pages = {k: v for k, v in pages.items() if k.startswith(("stuck", "/ "))}
            if args.only:
                pages = {k: v for k, v in pages.items() if re.search(args.only, k)}
            results = measure(console, peer, pages, args.rounds)
            load.append(os.getloadavg())
            lines += report(f"stuck rows {dist}: {args.rounds} interleaved rounds, ms", results)
            lines += [
                "",
                "| walked to the deepest page | pages | p50 | p95 | max | max KB | max queries |",
                "|---|---|---|---|---|---|---|",
                walk_report(f"/orders/stuck ({dist})", stuck_walk),
                walk_report("/audit?outcome=failed", audit_walk),
                "",
            ]
            raw[dist] = {
                k: {kk: vv for kk, vv in v.items() if kk not in ("body",)}
                for k, v in results.items()
            }
            print("\n".join(lines[-(len(results) + 12) :]), flush=True)
        mixed = [u for u, _ in console_pages(sample_values(url), deep).values()]
        before, after = memory(console, mixed, args.requests) if args.requests else (0.0, 0.0)
        load.append(os.getloadavg())
        if args.requests:
            lines.append(
                f"Memory (this process, the console): RSS {before:.1f} MB after 1,000 mixed "
                f"requests, {after:.1f} MB after {args.requests:,} ({after - before:+.1f} MB)."
            )
        lines.append(
            "Load average (1/5/15 min) during the run: "
            + ", ".join(f"{a:.2f}/{b:.2f}/{c:.2f}" for a, b, c in load)
        )
        print("\n".join(lines[-2:]), flush=True)
        raw["memory"] = {"after_1000": before, "after_all": after, "requests": args.requests}
        raw["load"] = load
        if args.json:
            Path(args.json).write_text(json.dumps(raw, indent=1))
        print("\n" + "\n".join(lines))
    finally:
        console.close()
        peer.close()
        if made:
            fill.drop(name)


if __name__ == "__main__":
    main()
