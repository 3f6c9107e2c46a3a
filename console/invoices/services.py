"""Invoice transmission with exponential backoff (runbooks 000 and 002).

Attempt n that fails is retried after base * 2^(n-1) seconds (capped, with
+-10 % jitter so a provider outage does not get every invoice back at the
same second); after the maximum number of attempts the invoice is `failed`
and waits for a person. Every attempt is logged with its error payload.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from console.db import utcnow
from console.invoices.models import Invoice, InvoiceStatus, InvoiceTransmission
from console.ops.metrics import INVOICE_ISSUE
from console.orders.models import Order
from console.payments.gateway import GatewayError, StripeGateway
from console.templating import money

RETRYABLE = (InvoiceStatus.DRAFT, InvoiceStatus.GENERATED)
STUCK_AFTER = timedelta(hours=1)


@dataclass(frozen=True)
class Backoff:
    base_seconds: int = 60
    cap_seconds: int = 6 * 3600
    max_attempts: int = 6
    jitter: float = 0.1

    def delay(self, attempt: int, rng: random.Random | None = None) -> timedelta:
        """How long after failed attempt number `attempt` (1-based) the next is due."""
        raw = min(self.base_seconds * 2 ** (attempt - 1), self.cap_seconds)
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return timedelta(seconds=raw * (1 + spread))


def backoff() -> Backoff:
    cfg = current_app.config
    return Backoff(
        base_seconds=int(cfg.get("INVOICE_RETRY_BASE_SECONDS", 60)),
        cap_seconds=int(cfg.get("INVOICE_RETRY_CAP_SECONDS", 6 * 3600)),
        max_attempts=int(cfg.get("INVOICE_MAX_ATTEMPTS", 6)),
    )


def due_condition(now: datetime) -> Any:
    """Invoices the retry job should attempt now."""
    return and_(
        Invoice.status.in_(RETRYABLE),
        or_(
            Invoice.next_attempt_at <= now,
            and_(Invoice.next_attempt_at.is_(None), Invoice.updated_at < now - STUCK_AFTER),
        ),
    )


@dataclass
class Attempt:
    succeeded: bool
    message: str
    payload: dict[str, Any] = field(default_factory=dict)


TARGETS = ("stripe", "manual")


def target() -> str:
    """Where invoices go: `stripe` (Stripe Invoicing, the default) or `manual`.

    `manual` is the runbook's switch for a provider outage (002): nothing is
    transmitted automatically; people mark invoices sent with a reference.
    """
    value = str(current_app.config.get("INVOICE_TARGET") or "stripe")
    return value if value in TARGETS else "stripe"


class ManualTarget(RuntimeError):
    """Invoices are set to be sent by hand (INVOICE_TARGET=manual)."""


def transmit(s: Session, gw: StripeGateway, invoice: Invoice, policy: Backoff) -> Attempt:
    """One transmission attempt, logged; the caller holds the row lock and commits."""
    if target() == "manual":
        raise ManualTarget(
            "INVOICE_TARGET is manual (provider outage procedure): send the invoice by hand "
            "and use Mark sent manually"
        )
    now = utcnow()
    attempt_no = invoice.attempts + 1
    order = s.get(Order, invoice.order_id) if invoice.order_id else None
    summary = (
        f"Stripe Invoicing: {money(invoice.amount, invoice.currency)} to "
        f"{order.customer_email if order else 'unknown customer'} (attempt {attempt_no})"
    )
    row = InvoiceTransmission(
        invoice_id=invoice.id, attempt=attempt_no, started_at=now, request_summary=summary
    )
    s.add(row)
    invoice.attempts = attempt_no
    try:
        result = gw.send_invoice(
            invoice_ref=invoice.external_id,
            customer_email=order.customer_email if order else "billing@example.invalid",
            amount=invoice.amount,
            currency=invoice.currency,
            description=f"Invoice {invoice.external_id}"
            + (f" for order {order.external_id}" if order else ""),
        )
    except GatewayError as exc:
        payload = {
            "kind": exc.kind,
            "message": exc.message,
            "http_status": exc.http_status,
            "code": exc.code,
        }
        row.finished_at = utcnow()
        row.response_status = exc.http_status
        row.error_payload = payload
        invoice.last_error = f"{exc.kind}: {exc.message}"[:2000]
        if attempt_no >= policy.max_attempts:
            invoice.status = InvoiceStatus.FAILED
            invoice.next_attempt_at = None
            when = "no more automatic attempts: it needs a person"
        else:
            invoice.next_attempt_at = now + policy.delay(attempt_no)
            when = f"next attempt at {invoice.next_attempt_at:%Y-%m-%d %H:%M} UTC"
        INVOICE_ISSUE.labels("failure").inc()
        return Attempt(False, f"transmission failed ({exc.kind}: {exc.message}); {when}", payload)
    row.finished_at = utcnow()
    row.response_status = 200
    row.succeeded = True
    invoice.status = InvoiceStatus.TRANSMITTED
    invoice.external_ref = str(result["id"])
    invoice.next_attempt_at = None
    invoice.last_error = None
    INVOICE_ISSUE.labels("success").inc()
    return Attempt(True, f"transmitted (Stripe {result['id']})", {"stripe_invoice": result["id"]})


@dataclass
class RetryReport:
    scanned: int = 0
    retried: int = 0
    succeeded: int = 0
    failed: int = 0
    last_error: str | None = None
    results: list[tuple[str, str]] = field(default_factory=list)


def retry_stuck(
    s: Session, gw: StripeGateway, policy: Backoff, *, dry_run: bool = False
) -> RetryReport:
    """Retry every due invoice once; safe in two processes (SKIP LOCKED per row)."""
    report = RetryReport()
    if target() == "manual":
        report.last_error = "INVOICE_TARGET is manual: nothing is transmitted automatically"
        return report
    now = utcnow()
    ids: Sequence[int] = s.scalars(
        select(Invoice.id).where(due_condition(now)).order_by(Invoice.next_attempt_at, Invoice.id)
    ).all()
    s.rollback()
    for invoice_id in ids:
        invoice = s.scalar(
            select(Invoice)
            .where(Invoice.id == invoice_id, due_condition(utcnow()))
            .with_for_update(skip_locked=True)
        )
        if invoice is None:  # another run has it, or it is no longer due
            s.rollback()
            continue
        report.scanned += 1
        if dry_run:
            report.results.append((invoice.external_id, "would retry"))
            s.rollback()
            continue
        attempt = transmit(s, gw, invoice, policy)
        s.commit()
        report.retried += 1
        if attempt.succeeded:
            report.succeeded += 1
        else:
            report.failed += 1
            report.last_error = f"{invoice.external_id}: {attempt.message}"
        report.results.append((invoice.external_id, attempt.message))
    return report
