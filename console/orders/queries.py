"""Which orders are stuck, and why (runbooks 000, 001, 002, 004)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, not_, or_, select, text
from sqlalchemy.orm import Session

from console.db import one_of
from console.orders.models import Order, OrderStatus, stuck_sql
from console.payments.models import WebhookEvent

WEBHOOK_GRACE = timedelta(minutes=10)

REASONS = {
    "webhook_unprocessed": "Paid, webhook not processed",
    "reservation_unconfirmed": "Paid, inventory reservation not confirmed",
    "amount_mismatch": "Amount or currency mismatch: possible fraud, never retried",
    "not_forwarded": "Processing, not forwarded to the supplier",
    "payment_pending_order": "Payment succeeded, order still pending",
}


def stuck_predicates(now: datetime) -> dict[str, ColumnElement[bool]]:
    """One SQL predicate per stuck reason, each on `orders` alone with its partial index.

    "Has a reservation still reserved" and "has a succeeded payment" were EXISTS
    subqueries, which no index on `orders` serves (the count was a scan of every
    order); they are now the columns `holds_stock` and `payment_succeeded`, kept by
    triggers (migration 0007). Each predicate is the index predicate of
    `ix_orders_stuck_<reason>_created` (plus the webhook grace window), and their OR
    is that of `ix_orders_stuck_{created,amount,updated}`. These name the reason of a
    row (`stuck_reason_column`); the filters use the same predicates in the indexes'
    literal SQL (`stuck_condition`), and tests/property/test_stuck_queue.py checks both
    against the EXISTS definition.
    """
    return {
        "amount_mismatch": and_(
            Order.amount_mismatch.is_(True),
            Order.status.not_in([OrderStatus.REFUNDED, OrderStatus.CANCELLED]),
        ),
        "webhook_unprocessed": and_(
            Order.status == OrderStatus.PAID,
            Order.webhook_processed_at.is_(None),
            Order.paid_at < now - WEBHOOK_GRACE,
        ),
        "reservation_unconfirmed": and_(
            Order.status.in_([OrderStatus.PAID, OrderStatus.CONFIRMED]),
            Order.holds_stock.is_(True),
        ),
        "not_forwarded": and_(
            Order.status == OrderStatus.PROCESSING, Order.supplier_forwarded_at.is_(None)
        ),
        "payment_pending_order": and_(
            Order.status == OrderStatus.PENDING, Order.payment_succeeded.is_(True)
        ),
    }


def stuck_reason_column(now: datetime) -> ColumnElement[str]:
    preds = stuck_predicates(now)
    return case(*[(pred, key) for key, pred in preds.items()], else_="")


def stuck_condition(now: datetime, reason: str | None = None) -> ColumnElement[bool]:
    """The stuck orders (of one reason), stated so PostgreSQL picks the partial index.

    Each condition is its index's predicate as literal SQL, identical to the index's,
    so the planner matches it whatever the driver does with parameters (a generic
    plan cannot prove `status = $1` implies `status = 'paid'`), and it is stated
    once, so the planner's row estimate is that of the index (the same predicate
    twice would be counted twice as selective, and a sort of "two rows" would win
    over the index in page order). Only the webhook grace window, a time, is added:
    for the reason itself as `paid_at < cutoff`; for the union as "not one of the
    orders stuck only by an unprocessed webhook still in its grace window" (see
    `count_stuck` for why that is exactly the difference).
    """
    if reason == "webhook_unprocessed":
        return and_(index_predicate(reason), Order.paid_at < now - WEBHOOK_GRACE)
    if reason in REASONS:
        return index_predicate(reason)
    return and_(index_predicate(), not_(_in_grace_only(now)))


def _in_grace_only(now: datetime) -> ColumnElement[bool]:
    """In the union of the index predicates, but stuck by no reason yet (see count_stuck)."""
    return and_(
        Order.status == OrderStatus.PAID,
        Order.webhook_processed_at.is_(None),
        or_(Order.paid_at.is_(None), Order.paid_at >= now - WEBHOOK_GRACE),
        Order.amount_mismatch.is_(False),
        Order.holds_stock.is_(False),
    )


def index_predicate(reason: str | None = None) -> ColumnElement[bool]:
    """A reason's partial-index predicate, or the union's (webhook: no grace window)."""
    # Parenthesised: literal SQL is not grouped by SQLAlchemy (`a OR b AND NOT c`).
    return text(f"({stuck_sql(reason, qualified=True)})")  # type: ignore[return-value]


def count_stuck(s: Session, now: datetime) -> int:
    """How many orders are stuck, from two small index-only scans, never a scan of orders.

    The union of the reasons without the grace window is exactly the predicate of
    `ix_orders_stuck_created`, so counting it reads only that index (the stuck rows,
    about 5,000 at a million orders). It also holds the orders paid inside the
    webhook grace window (or paid with no `paid_at`); they are stuck only if some
    other reason applies. For such an order (status `paid`) the other reasons that can
    apply are an amount mismatch and a held reservation: "processing" and "pending"
    exclude `paid`. So the exact count is the union minus the paid, unprocessed
    orders not yet past the grace window with neither of those, a range of
    `ix_orders_stuck_unprocessed` (paid_at) a few minutes wide.
    """
    union, in_grace = stuck_count_statements(now)
    return int(s.scalar(union) or 0) - int(s.scalar(in_grace) or 0)


def stuck_count_statements(now: datetime) -> tuple[Select[Any], Select[Any]]:
    """The two counts `count_stuck` subtracts (the dashboard runs them in its one statement)."""
    return (
        select(func.count()).select_from(Order).where(index_predicate()),
        select(func.count()).select_from(Order).where(_in_grace_only(now)),
    )


def pending_events_by_intent(s: Session, intent_ids: list[str]) -> dict[str, WebhookEvent]:
    """The oldest unprocessed Stripe event of each PaymentIntent (one query per page)."""
    if not intent_ids:
        return {}
    found: dict[str, WebhookEvent] = {}
    for event in s.scalars(
        select(WebhookEvent)
        .where(one_of(WebhookEvent.object_id, intent_ids), WebhookEvent.processed_at.is_(None))
        .order_by(WebhookEvent.received_at)
    ):
        if event.object_id is not None:
            found.setdefault(event.object_id, event)
    return found
