"""Which invoices need a person (runbooks 000 and 002)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, or_, select

from console.invoices.models import Invoice, InvoiceStatus

STUCK_AFTER = timedelta(hours=1)
STATUS_FILTERS = {
    "": "Needs attention",
    "failed": "Failed (max attempts)",
    "draft": "Stuck in draft",
    "generated": "Stuck in generated",
    "due": "Due for retry now",
}


def attention_condition(now: datetime) -> Any:
    """Failed, stuck in draft/generated longer than the threshold, or due for retry."""
    return or_(
        Invoice.status == InvoiceStatus.FAILED,
        and_(
            Invoice.status.in_([InvoiceStatus.DRAFT, InvoiceStatus.GENERATED]),
            or_(Invoice.updated_at < now - STUCK_AFTER, Invoice.next_attempt_at <= now),
        ),
    )


def attention_statement(now: datetime, filters: dict[str, str]) -> Select[Any]:
    stmt = select(Invoice).where(attention_condition(now))
    status = filters.get("status", "")
    if status in ("failed", "draft", "generated"):
        stmt = stmt.where(Invoice.status == InvoiceStatus(status))
    elif status == "due":
        stmt = stmt.where(
            Invoice.status.in_([InvoiceStatus.DRAFT, InvoiceStatus.GENERATED]),
            Invoice.next_attempt_at <= now,
        )
    q = (filters.get("q") or "").strip()
    if q:
        from console.orders.models import Order

        order_ids = select(Order.id).where(Order.external_id == q).scalar_subquery()
        stmt = stmt.where(or_(Invoice.external_id == q, Invoice.order_id.in_(order_ids)))
    return stmt
