"""Queue counts for the dashboard and the metrics gauges, one query each.

Every count is a predicate with a matching partial index; none scans a table.
The queues' pages live in their packages (`console/<queue>/views.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from console.coupons.queries import count_leaks, count_mismatches
from console.inventory.services import count_drift
from console.invoices.models import Invoice
from console.ops.jobs import late_jobs
from console.orders.models import Order
from console.orders.queries import count_stuck
from console.payments.models import WebhookEvent, WebhookRejection, WebhookStatus
from console.payouts.eligibility import ready_condition
from console.payouts.models import Approval, ApprovalStatus, Seller, SellerPayout
from console.reconciliation.models import FindingStatus, ReconciliationFinding, Severity
from console.suppliers.models import SupplierSyncRun, SyncStatus
from console.suppliers.services import waiting_condition

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
    coupon_count_mismatches: int
    supplier_orders_waiting: int
    supplier_failed_syncs: int
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
        inventory_drift=count_drift(s),
        coupon_leaks=count_leaks(s, now),
        coupon_count_mismatches=count_mismatches(s),
        supplier_orders_waiting=count(select(func.count(Order.id)).where(waiting_condition())),
        supplier_failed_syncs=count(
            select(func.count(SupplierSyncRun.id)).where(
                SupplierSyncRun.status == SyncStatus.FAILED,
                SupplierSyncRun.superseded_by_id.is_(None),
            )
        ),
        late_jobs=len(late_jobs(s, now)),
    )
