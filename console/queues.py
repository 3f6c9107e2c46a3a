"""Queue counts for the dashboard and the metrics gauges, one query each.

Every count is a predicate with a matching partial index; none scans a table.
The queues' pages live in their packages (`console/<queue>/views.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import DateTime, Dialect, Select, and_, bindparam, func, or_, select
from sqlalchemy.orm import Session

from console.coupons.queries import leaks_count_statement, mismatches_count_statement
from console.inventory.services import drift_count_statement
from console.invoices.models import Invoice
from console.ops.jobs import late_jobs
from console.orders.models import Order
from console.orders.queries import stuck_count_statements
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


# The time every count is taken at, a parameter: the statement is built once per
# process (`_counts_statement`), so a dashboard view neither rebuilds eighteen
# subqueries nor recomputes their cache key (6 of its 12 ms of CPU, issue 15). The
# conditions only subtract intervals from `now` and compare with it; PostgreSQL
# folds `$1 - interval` before choosing each index.
# Plain DateTime (not UTCDateTime), so `now - interval` binds the interval as one.
_NOW = bindparam("now", type_=DateTime(timezone=True))


@cache
def _counts_statement() -> Select[Any]:
    now = cast(datetime, _NOW)  # a bound parameter where the conditions expect a time
    stuck_union, stuck_in_grace = stuck_count_statements(now)
    counts: dict[str, Select[Any]] = {
        "stuck_union": stuck_union,
        "stuck_in_grace": stuck_in_grace,
        "failed_webhooks": select(func.count(WebhookEvent.id)).where(
            failed_webhooks_condition(now)
        ),
        "signature_failures_24h": select(func.count(WebhookRejection.id)).where(
            WebhookRejection.received_at >= now - REJECTIONS_WINDOW
        ),
        "failed_invoices": select(func.count(Invoice.id)).where(invoices_attention_condition(now)),
        "payouts_ready": select(func.count(SellerPayout.id))
        .join(Seller, Seller.id == SellerPayout.seller_id)
        .where(ready_condition(now)),
        "approvals_waiting": select(func.count(Approval.id)).where(
            Approval.status == ApprovalStatus.PENDING
        ),
        **{
            f"findings_{sev.value}": select(func.count(ReconciliationFinding.id)).where(
                ReconciliationFinding.status == FindingStatus.OPEN,
                ReconciliationFinding.severity == sev,
            )
            for sev in Severity
        },
        "inventory_drift": drift_count_statement(),
        "coupon_leaks": leaks_count_statement(now),
        "coupon_count_mismatches": mismatches_count_statement(),
        "supplier_orders_waiting": select(func.count(Order.id)).where(waiting_condition()),
        "supplier_failed_syncs": select(func.count(SupplierSyncRun.id)).where(
            SupplierSyncRun.status == SyncStatus.FAILED,
            SupplierSyncRun.superseded_by_id.is_(None),
        ),
    }
    return select(*(stmt.scalar_subquery().label(name) for name, stmt in counts.items()))


_SAMPLE_NOW = datetime(2001, 2, 3, 4, 5, 6, 789, tzinfo=UTC)


@cache
def _counts_sql(dialect: Dialect) -> str:
    """`_counts_statement` as SQL text with every constant inline and `now` its one parameter."""
    stmt = _counts_statement().params(now=_SAMPLE_NOW)
    sql = str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    sample = "'2001-02-03 04:05:06.000789+00:00'"
    if sample not in sql:  # a dialect that renders times otherwise: fail loudly, in tests
        raise RuntimeError("the dashboard's count statement renders `now` unexpectedly")
    return sql.replace(sample, "%(now)s")


def queue_counts(s: Session, now: datetime) -> QueueCounts:
    """Every queue's count in one statement (plus the late jobs' two).

    Each count is its own scalar subquery, planned on its own with its own
    partial index, exactly as when they were sixteen statements; one
    statement saves fifteen round trips and fifteen passes through the ORM's
    execute path, which were most of the dashboard's time (issue 15).
    """
    conn = s.connection()
    # Planned once per connection: eighteen subqueries cost ~7 ms to plan, more than
    # they take to run, and the connections replan every statement otherwise
    # (`plan_cache_mode=force_custom_plan`, db.make_engine). A generic plan is as good
    # here: every constant is in the SQL text, so each partial index still matches.
    conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
    row = conn.exec_driver_sql(_counts_sql(conn.dialect), {"now": now}).one()
    conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
    n = {name: int(value or 0) for name, value in row._mapping.items()}
    return QueueCounts(
        stuck_orders=n["stuck_union"] - n["stuck_in_grace"],  # see count_stuck
        failed_webhooks=n["failed_webhooks"],
        signature_failures_24h=n["signature_failures_24h"],
        failed_invoices=n["failed_invoices"],
        payouts_ready=n["payouts_ready"],
        approvals_waiting=n["approvals_waiting"],
        findings={sev.value: n[f"findings_{sev.value}"] for sev in Severity},
        inventory_drift=n["inventory_drift"],
        coupon_leaks=n["coupon_leaks"],
        coupon_count_mismatches=n["coupon_count_mismatches"],
        supplier_orders_waiting=n["supplier_orders_waiting"],
        supplier_failed_syncs=n["supplier_failed_syncs"],
        late_jobs=len(late_jobs(s, now)),
    )
