"""A page of 50 rows costs a fixed number of queries, however many rows it shows."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import event

from console import db
from console.db import get_db, utcnow
from console.demo.seed import seed
from tests.factories import make_order


@contextmanager
def count_queries(app):
    statements: list[str] = []

    def before(conn, cursor, statement, *args):
        statements.append(statement)

    engine = get_db(app).engine
    event.listen(engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", before)


def test_list_pages_do_not_query_per_row(app, auth, client):
    with app.app_context():
        seed(db.session(), volume=100)
    auth.as_role("admin")
    pages = [
        "/orders/stuck",
        "/orders/stuck?reason=webhook_unprocessed",
        "/orders/stuck?sort=amount&dir=desc",
        "/webhooks",
        "/audit",
        "/audit?actor=admin@example.test",
        "/audit?since=2020-01-01&until=2100-01-01",
        "/",
    ]
    with count_queries(app) as few:
        for path in pages:
            assert client.get(path).status_code == 200
    with app.app_context():
        s = db.session()
        for _ in range(60):  # many more stuck orders: the page shows 50 of them
            make_order(s, paid_at=utcnow() - timedelta(hours=1))
        s.commit()
    with count_queries(app) as many:
        for path in pages:
            assert client.get(path).status_code == 200
    assert len(many) <= len(few) + 2, (len(few), len(many))


def test_new_queue_pages_do_not_query_per_row(app, auth, client):
    """Drift, coupon leaks and supplier pages cost the same with 2 rows or 50."""
    from tests.factories import make_coupon, make_failed_run, make_item, make_waiting_order

    with app.app_context():
        seed(db.session(), volume=100)
    auth.as_role("admin")
    pages = ["/inventory/drift", "/coupons/leaks", "/suppliers"]
    with count_queries(app) as few:
        for path in pages:
            assert client.get(path).status_code == 200
    with app.app_context():
        s = db.session()
        for _ in range(60):  # many more rows of each queue: each page shows 50
            make_item(s, stock=10, ledger=(8, -1))
            make_coupon(s, expired=2, live=1)
            make_waiting_order(s)
        for _ in range(20):
            make_failed_run(s)
        s.commit()
    with count_queries(app) as many:
        for path in pages:
            resp = client.get(path)
            assert resp.status_code == 200
            assert "Next page" in resp.get_data(as_text=True)
    assert len(many) <= len(few) + 2, (len(few), len(many))


def test_money_queue_pages_do_not_query_per_row(app, auth, client):
    """Failed invoices, ready payouts and findings (whose buttons read their orders' payments)."""
    from console.invoices.models import Invoice, InvoiceStatus
    from console.payments.models import Payment, PaymentStatus
    from console.reconciliation.models import FindingType, ReconciliationFinding, Severity
    from tests.factories import make_payout

    def add_rows(s, n: int, tag: str) -> None:
        for i in range(n):
            order = make_order(s, amount_mismatch=i % 2 == 0)
            s.add(
                Payment(
                    payment_intent_id=order.payment_intent_id,
                    order_id=order.id,
                    amount=order.amount + 100,
                    currency="EUR",
                    status=PaymentStatus.SUCCEEDED,
                )
            )
            s.add(
                Invoice(
                    external_id=f"INV-{tag}{i}",
                    order_id=order.id,
                    amount=order.amount,
                    currency="EUR",
                    status=InvoiceStatus.FAILED,
                    attempts=3,
                    last_error="supplier said no",
                )
            )
            kinds = list(FindingType)
            s.add(
                ReconciliationFinding(
                    fingerprint=f"fp-{tag}{i}",
                    type=kinds[i % len(kinds)],
                    severity=Severity.HIGH,
                    explanation="differs",
                    order_id=order.id,
                    payment_intent_id=order.payment_intent_id,
                )
            )
            make_payout(s)
        s.commit()

    with app.app_context():
        seed(db.session(), volume=100)
        add_rows(db.session(), 3, "a")
    auth.as_role("admin")
    pages = ["/invoices/failed", "/payouts/ready", "/reconciliation", "/approvals"]
    with count_queries(app) as few:
        for path in pages:
            assert client.get(path).status_code == 200
    with app.app_context():
        add_rows(db.session(), 60, "b")
    with count_queries(app) as many:
        for path in pages:
            assert client.get(path).status_code == 200
    assert len(many) <= len(few) + 2, (len(few), len(many))
