"""Which orders are stuck, and why (runbooks 000, 001, 002, 004)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, case, exists, func, or_, select
from sqlalchemy.orm import Session

from console.inventory.models import InventoryReservation, ReservationStatus
from console.orders.models import Order, OrderStatus
from console.payments.models import Payment, PaymentStatus, WebhookEvent

WEBHOOK_GRACE = timedelta(minutes=10)

REASONS = {
    "webhook_unprocessed": "Paid, webhook not processed",
    "reservation_unconfirmed": "Paid, inventory reservation not confirmed",
    "amount_mismatch": "Amount or currency mismatch: possible fraud, never retried",
    "not_forwarded": "Processing, not forwarded to the supplier",
    "payment_pending_order": "Payment succeeded, order still pending",
}


def _unconfirmed_reservation() -> ColumnElement[bool]:
    return exists().where(
        InventoryReservation.order_id == Order.id,
        InventoryReservation.status == ReservationStatus.RESERVED,
    )


def _succeeded_payment() -> ColumnElement[bool]:
    return exists().where(Payment.order_id == Order.id, Payment.status == PaymentStatus.SUCCEEDED)


def stuck_predicates(now: datetime) -> dict[str, ColumnElement[bool]]:
    """One SQL predicate per stuck reason, each backed by a partial index."""
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
            _unconfirmed_reservation(),
        ),
        "not_forwarded": and_(
            Order.status == OrderStatus.PROCESSING, Order.supplier_forwarded_at.is_(None)
        ),
        "payment_pending_order": and_(Order.status == OrderStatus.PENDING, _succeeded_payment()),
    }


def stuck_reason_column(now: datetime) -> ColumnElement[str]:
    preds = stuck_predicates(now)
    return case(*[(pred, key) for key, pred in preds.items()], else_="")


def stuck_condition(now: datetime, reason: str | None = None) -> ColumnElement[bool]:
    preds = stuck_predicates(now)
    if reason in preds:
        return preds[reason]
    return or_(*preds.values())


def count_stuck(s: Session, now: datetime) -> int:
    return int(s.scalar(select(func.count(Order.id)).where(stuck_condition(now))) or 0)


def pending_events_by_intent(s: Session, intent_ids: list[str]) -> dict[str, WebhookEvent]:
    """The oldest unprocessed Stripe event of each PaymentIntent (one query per page)."""
    if not intent_ids:
        return {}
    found: dict[str, WebhookEvent] = {}
    for event in s.scalars(
        select(WebhookEvent)
        .where(WebhookEvent.object_id.in_(intent_ids), WebhookEvent.processed_at.is_(None))
        .order_by(WebhookEvent.received_at)
    ):
        if event.object_id is not None:
            found.setdefault(event.object_id, event)
    return found
