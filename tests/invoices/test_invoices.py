"""Invoice transmission, backoff, the retry job and the invoice actions."""

from __future__ import annotations

import random
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from console import db
from console.audit.models import AuditEntry
from console.db import utcnow
from console.invoices.models import Invoice, InvoiceStatus, InvoiceTransmission
from console.invoices.services import Backoff
from tests.actions.helpers import submit
from tests.factories import make_order

_n = iter(range(1, 100000))


def attempts(app) -> int:
    """Faults for every attempt of the gateway's retry policy: Stripe keeps failing."""
    return app.config["SETTINGS"].stripe_max_attempts


def make_invoice(s, **fields) -> Invoice:
    order = make_order(s)
    values = {
        "external_id": f"INV-T{next(_n):05d}-{random.randrange(10**6)}",
        "order_id": order.id,
        "amount": order.amount,
        "currency": order.currency,
        "status": InvoiceStatus.DRAFT,
        "updated_at": utcnow() - timedelta(hours=2),
    }
    values.update(fields)
    invoice = Invoice(**values)
    s.add(invoice)
    s.flush()
    return invoice


def reload(app, external_id: str) -> Invoice:
    with app.app_context():
        return db.session().scalar(select(Invoice).where(Invoice.external_id == external_id))


def transmissions(app, external_id: str) -> list[InvoiceTransmission]:
    with app.app_context():
        s = db.session()
        invoice = s.scalar(select(Invoice).where(Invoice.external_id == external_id))
        return list(
            s.scalars(
                select(InvoiceTransmission)
                .where(InvoiceTransmission.invoice_id == invoice.id)
                .order_by(InvoiceTransmission.attempt)
            )
        )


@pytest.mark.parametrize(
    ("attempt", "expected"), [(1, 60), (2, 120), (3, 240), (4, 480), (8, 3600)]
)
def test_backoff_schedule_doubles_and_is_capped(attempt, expected):
    policy = Backoff(base_seconds=60, cap_seconds=3600, max_attempts=10)
    rng = random.Random(7)
    for _ in range(50):
        seconds = policy.delay(attempt, rng).total_seconds()
        assert expected * 0.9 <= seconds <= expected * 1.1


def test_retry_stuck_transmits_due_invoices(app, stripe):
    with app.app_context():
        s = db.session()
        due = make_invoice(s, next_attempt_at=utcnow() - timedelta(minutes=1), attempts=1)
        later = make_invoice(s, next_attempt_at=utcnow() + timedelta(hours=1), attempts=1)
        s.commit()
    result = app.test_cli_runner().invoke(args=["invoices", "retry-stuck"])
    assert result.exit_code == 0, result.output
    assert "scanned=1 acted=1 errors=0 retried=1" in result.output
    sent = reload(app, due.external_id)
    assert sent.status == InvoiceStatus.TRANSMITTED and sent.external_ref.startswith("in_")
    assert reload(app, later.external_id).status == InvoiceStatus.DRAFT
    [t] = transmissions(app, due.external_id)
    assert t.succeeded and t.attempt == 2 and "Stripe Invoicing" in t.request_summary
    assert stripe.count_requests("POST", "/v1/invoices") == 1
    dry = app.test_cli_runner().invoke(args=["invoices", "retry-stuck", "--dry-run"])
    assert "scanned=0" in dry.output


@pytest.mark.parametrize(("status", "delay"), [(500, 0.0), (503, 3.0)], ids=["500", "timeout"])
def test_failing_target_records_payload_and_schedules_next(app, stripe, status, delay):
    with app.app_context():
        s = db.session()
        invoice = make_invoice(s)
        s.commit()
    app.config["INVOICE_RETRY_BASE_SECONDS"] = 600
    try:
        stripe.add_fault(
            path_prefix="/v1/customers", status=status, delay=delay, count=attempts(app)
        )
        before = utcnow()
        result = app.test_cli_runner().invoke(args=["invoices", "retry-stuck"])
        assert "errors=1" in result.output
    finally:
        app.config.pop("INVOICE_RETRY_BASE_SECONDS")
    failed = reload(app, invoice.external_id)
    assert failed.status == InvoiceStatus.DRAFT and failed.attempts == 1
    assert (
        before + timedelta(seconds=540)
        <= failed.next_attempt_at
        <= utcnow() + timedelta(seconds=660)
    )
    [t] = transmissions(app, invoice.external_id)
    assert not t.succeeded and t.error_payload["kind"] in ("unavailable", "timeout")


def test_max_attempts_leaves_it_failed_for_a_person(app, stripe):
    with app.app_context():
        s = db.session()
        invoice = make_invoice(s, attempts=5, next_attempt_at=utcnow() - timedelta(seconds=1))
        s.commit()
    stripe.add_fault(path_prefix="/v1/customers", status=500, count=attempts(app))
    app.test_cli_runner().invoke(args=["invoices", "retry-stuck"])
    failed = reload(app, invoice.external_id)
    assert failed.status == InvoiceStatus.FAILED and failed.next_attempt_at is None
    assert failed.attempts == 6


@pytest.mark.slow
def test_two_concurrent_retry_runs_transmit_each_invoice_once(committed_app, stripe):
    with committed_app.app_context():
        s = db.session()
        refs = [make_invoice(s).external_id for _ in range(12)]
        s.commit()
    barrier = threading.Barrier(2)
    outputs: list[str] = []

    def run() -> None:
        barrier.wait()
        outputs.append(
            committed_app.test_cli_runner().invoke(args=["invoices", "retry-stuck"]).output
        )

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for ref in refs:
        rows = transmissions(committed_app, ref)
        assert len(rows) == 1 and rows[0].succeeded, ref
    creates = [
        r for r in stripe.requests_log() if r["method"] == "POST" and r["path"] == "/v1/invoices"
    ]
    assert len({r["idempotency_key"] for r in creates}) == 12


def test_retry_now_and_the_role_rules(app, auth, client, stripe):
    with app.app_context():
        s = db.session()
        invoice = make_invoice(s, status=InvoiceStatus.FAILED, attempts=6)
        s.commit()
    auth.as_role("support")
    page = client.get("/invoices/failed").get_data(as_text=True)
    assert invoice.external_id in page and "Retry now" in page
    assert "Mark sent manually" not in page  # admin only
    assert submit(client, "invoices:invoice:retry", invoice.external_id).status_code == 303
    assert reload(app, invoice.external_id).status == InvoiceStatus.TRANSMITTED


def test_retry_now_that_fails_again_stays_failed_and_says_so(app, auth, client, stripe):
    with app.app_context():
        s = db.session()
        invoice = make_invoice(s, status=InvoiceStatus.FAILED, attempts=6)
        s.commit()
    auth.as_role("support")
    stripe.add_fault(path_prefix="/v1/customers", status=500, count=attempts(app))
    resp = submit(client, "invoices:invoice:retry", invoice.external_id)
    assert resp.status_code == 303
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "flash-warning" in page and "transmission failed" in page
    again = reload(app, invoice.external_id)
    assert again.status == InvoiceStatus.FAILED and again.attempts == 7


def test_mark_sent_needs_ticket_and_reference(app, auth, client):
    with app.app_context():
        s = db.session()
        invoice = make_invoice(s, status=InvoiceStatus.FAILED)
        s.commit()
    auth.as_role("admin")
    no_ticket = submit(
        client, "invoices:invoice:mark_sent", invoice.external_id, external_ref="PDF-1"
    )
    assert no_ticket.status_code == 422
    ok = submit(
        client,
        "invoices:invoice:mark_sent",
        invoice.external_id,
        external_ref="PDF-1",
        ticket="OPS-9",
    )
    assert ok.status_code == 303
    sent = reload(app, invoice.external_id)
    assert sent.status == InvoiceStatus.TRANSMITTED and sent.external_ref == "PDF-1"


def test_void(app, auth, client):
    with app.app_context():
        s = db.session()
        invoice = make_invoice(s)
        s.commit()
    auth.as_role("admin")
    assert submit(client, "invoices:invoice:void", invoice.external_id).status_code == 303
    assert reload(app, invoice.external_id).status == InvoiceStatus.VOID
    client.get("/")  # consume the flash naming the invoice
    assert f"row-invoice-{invoice.external_id}" not in client.get("/invoices/failed").get_data(
        as_text=True
    )


def test_bulk_retry_reports_each_row(app, auth, client, stripe):
    with app.app_context():
        s = db.session()
        good = make_invoice(s, status=InvoiceStatus.DRAFT)
        also = make_invoice(s, status=InvoiceStatus.GENERATED)
        stays = make_invoice(s, status=InvoiceStatus.FAILED)
        s.commit()
    auth.as_role("support")
    resp = submit(client, "invoices:selection:retry", "all")
    assert resp.status_code == 303
    assert reload(app, good.external_id).status == InvoiceStatus.TRANSMITTED
    assert reload(app, also.external_id).status == InvoiceStatus.TRANSMITTED
    assert reload(app, stays.external_id).status == InvoiceStatus.FAILED
    with app.app_context():
        entry = db.session().scalar(
            select(AuditEntry).where(AuditEntry.action == "invoices:selection:retry")
        )
    results = {r["invoice"]: r["result"] for r in entry.details["extra"]["results"]}
    assert results[good.external_id] == "transmitted" and results[stays.external_id] == "skipped"


def test_invoice_page_shows_transmissions_and_history(app, auth, client, stripe):
    with app.app_context():
        s = db.session()
        invoice = make_invoice(s, status=InvoiceStatus.FAILED)
        s.commit()
    auth.as_role("support")
    submit(client, "invoices:invoice:retry", invoice.external_id)
    page = client.get(f"/invoices/{invoice.external_id}").get_data(as_text=True)
    assert "Stripe Invoicing" in page and "invoices:invoice:retry" in page
    assert client.get("/invoices/INV-NOPE").status_code == 404


def test_manual_target_transmits_nothing_and_says_why(app, auth, client, stripe):
    with app.app_context():
        s = db.session()
        invoice = make_invoice(s, next_attempt_at=utcnow() - timedelta(minutes=1))
        s.commit()
    app.config["INVOICE_TARGET"] = "manual"
    try:
        result = app.test_cli_runner().invoke(args=["invoices", "retry-stuck"])
        assert "scanned=0" in result.output
        auth.as_role("support")
        resp = submit(client, "invoices:invoice:retry", invoice.external_id)
        assert resp.status_code == 409 and "Mark sent manually" in resp.get_data(as_text=True)
    finally:
        app.config["INVOICE_TARGET"] = "stripe"
    assert stripe.count_requests("POST", "/v1/customers") == 0
    assert reload(app, invoice.external_id).status == InvoiceStatus.DRAFT
