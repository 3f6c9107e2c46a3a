"""Queue counts for the dashboard and the metrics gauges, one query each.

Every count is a predicate with a matching partial index; none scans a table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint
from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

from console.coupons.models import CouponReservation, CouponReservationStatus
from console.inventory.models import InventoryItem, InventoryLedgerEntry
from console.invoices.models import Invoice
from console.ops.jobs import late_jobs
from console.orders.queries import count_stuck
from console.payments.models import WebhookEvent, WebhookRejection, WebhookStatus
from console.payouts.eligibility import ready_condition
from console.payouts.models import Approval, ApprovalStatus, Seller, SellerPayout
from console.reconciliation.models import FindingStatus, ReconciliationFinding, Severity

bp = Blueprint("queues", __name__)

INVOICE_STUCK_AFTER = timedelta(hours=1)
WEBHOOK_GRACE = timedelta(minutes=10)
REJECTIONS_WINDOW = timedelta(hours=24)


def failed_webhooks_condition(now: datetime):  # type: ignore[no-untyped-def]
    return and_(
        WebhookEvent.processed_at.is_(None),
        or_(
            WebhookEvent.status == WebhookStatus.FAILED,
            and_(
                WebhookEvent.status == WebhookStatus.RECEIVED,
                WebhookEvent.received_at < now - WEBHOOK_GRACE,
            ),
        ),
    )


def invoices_attention_condition(now: datetime):  # type: ignore[no-untyped-def]
    from console.invoices.queries import attention_condition

    return attention_condition(now)


def coupon_leak_condition(now: datetime):  # type: ignore[no-untyped-def]
    return and_(
        CouponReservation.status == CouponReservationStatus.RESERVED,
        CouponReservation.expires_at < now,
    )


def drift_query() -> Select[Any]:
    ledger = (
        select(
            InventoryLedgerEntry.sku.label("sku"),
            func.coalesce(func.sum(InventoryLedgerEntry.quantity_change), 0).label("ledger_total"),
        )
        .group_by(InventoryLedgerEntry.sku)
        .subquery()
    )
    total = func.coalesce(ledger.c.ledger_total, 0)
    return (
        select(InventoryItem, total.label("ledger_total"))
        .outerjoin(ledger, ledger.c.sku == InventoryItem.sku)
        .where(InventoryItem.stock_count != total)
    )


@dataclass
class QueueCounts:
    stuck_orders: int
    failed_webhooks: int
    signature_failures_24h: int
    failed_invoices: int
    payouts_ready: int
    approvals_waiting: int
    findings: dict[str, int]
    inventory_drift: int
    coupon_leaks: int
    late_jobs: int

    @property
    def open_findings(self) -> int:
        return sum(self.findings.values())


def queue_counts(s: Session, now: datetime) -> QueueCounts:
    def count(stmt) -> int:  # type: ignore[no-untyped-def]
        return int(s.scalar(stmt) or 0)

    findings = dict.fromkeys([sev.value for sev in Severity], 0)
    for severity, n in s.execute(
        select(ReconciliationFinding.severity, func.count(ReconciliationFinding.id))
        .where(ReconciliationFinding.status == FindingStatus.OPEN)
        .group_by(ReconciliationFinding.severity)
    ):
        findings[Severity(severity).value] = int(n)
    drift = drift_query().subquery()
    return QueueCounts(
        stuck_orders=count_stuck(s, now),
        failed_webhooks=count(
            select(func.count(WebhookEvent.id)).where(failed_webhooks_condition(now))
        ),
        signature_failures_24h=count(
            select(func.count(WebhookRejection.id)).where(
                WebhookRejection.received_at >= now - REJECTIONS_WINDOW
            )
        ),
        failed_invoices=count(
            select(func.count(Invoice.id)).where(invoices_attention_condition(now))
        ),
        payouts_ready=count(
            select(func.count(SellerPayout.id))
            .join(Seller, Seller.id == SellerPayout.seller_id)
            .where(ready_condition(now))
        ),
        approvals_waiting=count(
            select(func.count(Approval.id)).where(Approval.status == ApprovalStatus.PENDING)
        ),
        findings=findings,
        inventory_drift=count(select(func.count()).select_from(drift)),
        coupon_leaks=count(
            select(func.count(CouponReservation.id)).where(coupon_leak_condition(now))
        ),
        late_jobs=len(late_jobs(s, now)),
    )


# Pages of queues whose actions arrive later show their rows read-only.
from flask import render_template  # noqa: E402
from flask_login import login_required  # noqa: E402

from console.security.guards import require  # noqa: E402
from console.security.permissions import Permission  # noqa: E402


def _placeholder(title: str) -> str:
    return render_template("queues/placeholder.html", title=title)


@bp.get("/inventory/drift")
@login_required
@require(Permission.QUEUES_VIEW)
def inventory() -> str:
    return _placeholder("Inventory drift")


@bp.get("/coupons/leaks")
@login_required
@require(Permission.QUEUES_VIEW)
def coupons() -> str:
    return _placeholder("Coupon reservation leaks")
