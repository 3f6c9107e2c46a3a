"""Every page with every role: 200 or 403 as the role table says, never a 500."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from console import db
from console.audit.models import AuditEntry
from console.demo.seed import seed
from console.orders.models import Order
from console.security.permissions import ROLE_PERMISSIONS, Permission
from console.suppliers.models import SupplierSyncRun

PAGES: list[tuple[str, Permission | None]] = [
    ("/", None),
    ("/orders/stuck", Permission.QUEUES_VIEW),
    ("/orders/stuck?reason=amount_mismatch", Permission.QUEUES_VIEW),
    ("/orders/stuck?q=nobody@example.com", Permission.QUEUES_VIEW),
    ("/webhooks", Permission.QUEUES_VIEW),
    ("/webhooks?status=attention", Permission.QUEUES_VIEW),
    ("/webhooks?tab=rejected", Permission.QUEUES_VIEW),
    ("/webhooks/evt_demo_stuck_0001", Permission.QUEUES_VIEW),
    ("/invoices/failed", Permission.QUEUES_VIEW),
    ("/invoices/failed?status=failed", Permission.QUEUES_VIEW),
    ("/invoices/failed?status=due&q=INV-DEMO-0001", Permission.QUEUES_VIEW),
    ("/invoices/INV-DEMO-0003", Permission.QUEUES_VIEW),
    ("/payouts/ready", Permission.QUEUES_VIEW),
    ("/payouts/ready?tab=blocked", Permission.QUEUES_VIEW),
    ("/approvals", Permission.QUEUES_VIEW),
    ("/reconciliation", Permission.QUEUES_VIEW),
    ("/reconciliation?status=dismissed&severity=high", Permission.QUEUES_VIEW),
    ("/reconciliation/findings/stripe_paid_no_order:pi_demo_orphan_0010", Permission.QUEUES_VIEW),
    ("/inventory/drift", Permission.QUEUES_VIEW),
    ("/inventory/drift?sku=SKU-00&min=4&sort=drift&dir=desc", Permission.QUEUES_VIEW),
    ("/inventory/drift?min=not-a-number", Permission.QUEUES_VIEW),
    ("/inventory/items/SKU-0007", Permission.QUEUES_VIEW),
    ("/coupons/leaks", Permission.QUEUES_VIEW),
    ("/coupons/leaks?code=welcome&sort=reserved", Permission.QUEUES_VIEW),
    ("/coupons/WELCOME10", Permission.QUEUES_VIEW),
    ("/suppliers", Permission.QUEUES_VIEW),
    ("/suppliers?supplier=1&q=ORD-DEMO-0005&sort=amount", Permission.QUEUES_VIEW),
    ("/ops/jobs", Permission.QUEUES_VIEW),
    ("/audit", Permission.AUDIT_VIEW),
    ("/audit?outcome=denied", Permission.AUDIT_VIEW),
    ("/audit/export", Permission.AUDIT_EXPORT),
]


@pytest.fixture
def seeded(app):
    with app.app_context():
        seed(db.session(), volume=120)
        db.session().commit()


@pytest.mark.parametrize("role", ["support", "admin", "auditor"])
def test_every_page_with_every_role(app, auth, client, seeded, role):
    auth.as_role(role)
    with app.app_context():
        order = db.session().scalars(select(Order).order_by(Order.id)).first()
        run_id = db.session().scalar(select(func.max(SupplierSyncRun.id)))
    pages = [
        *PAGES,
        (f"/orders/{order.external_id}", Permission.QUEUES_VIEW),
        (f"/suppliers/runs/{run_id}", Permission.QUEUES_VIEW),
    ]
    granted = ROLE_PERMISSIONS[role]
    for path, needs in pages:
        resp = client.get(path)
        expected = 200 if needs is None or needs in granted else 403
        assert resp.status_code == expected, (role, path, resp.status_code)
        assert "Traceback" not in resp.get_data(as_text=True)
    with app.app_context():
        denied = (
            db.session()
            .scalars(select(AuditEntry).where(AuditEntry.action == "page:view:denied"))
            .all()
        )
    forbidden = [p for p, needs in pages if needs is not None and needs not in granted]
    assert len(denied) == len(forbidden)


def test_dashboard_shows_seeded_counts(app, auth, client, seeded):
    from console.db import utcnow
    from console.queues import queue_counts

    auth.as_role("support")
    html = client.get("/").get_data(as_text=True)
    with app.app_context():
        counts = queue_counts(db.session(), utcnow())
    assert counts.stuck_orders > 0
    assert f'<span class="count">{counts.stuck_orders}</span>' in html
    assert f'<span class="count">{counts.payouts_ready}</span>' in html
    assert 'href="/orders/stuck"' in html
    # The runbook 000/001/002 cards open their queues, with the seeded cases counted.
    assert counts.inventory_drift == 2 and counts.coupon_leaks == 6
    assert counts.coupon_count_mismatches == 1
    assert counts.supplier_orders_waiting == 1 and counts.supplier_failed_syncs == 1
    for href in ('href="/inventory/drift"', 'href="/coupons/leaks"', 'href="/suppliers"'):
        assert href in html
    for path in ("/inventory/drift", "/coupons/leaks", "/suppliers"):
        assert "not available yet" not in client.get(path).get_data(as_text=True)


def test_unknown_url_is_a_404_page_without_traceback(auth, client):
    auth.as_role("support")
    resp = client.get("/no/such/page")
    assert resp.status_code == 404
    assert "There is nothing at this address" in resp.get_data(as_text=True)


def test_unknown_order_is_404(auth, client):
    auth.as_role("support")
    assert client.get("/orders/ORD-NOPE").status_code == 404


def test_bad_cursor_is_a_clear_400(auth, client):
    auth.as_role("support")
    resp = client.get("/orders/stuck?after=not-a-cursor")
    assert resp.status_code == 400
    assert "page link is not valid" in resp.get_data(as_text=True)


def test_security_headers(auth, client):
    auth.as_role("support")
    resp = client.get("/")
    csp = resp.headers["Content-Security-Policy"]
    assert "unsafe-eval" not in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"]
    assert "Strict-Transport-Security" not in resp.headers  # test mode: plain http


def test_healthz_and_metrics(client, app):
    health = client.get("/healthz")
    assert health.status_code == 200
    body = health.get_json()
    assert body["database"] == "ok"
    assert "payouts-auto-release" in body["jobs"]
    metrics = client.get("/metrics").get_data(as_text=True)
    for name in (
        "http_request_duration_seconds",
        "stuck_paid_orders",
        "failed_invoices",
        "coupon_reservation_leaks",
        "payouts_ready",
        "reconciliation_open_findings",
    ):
        assert name in metrics
