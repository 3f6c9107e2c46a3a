"""What the order actions' preconditions need, fetched once per page.

A list page calls `prefetch(s, orders)`; the preconditions that decide which
buttons to show then read these facts instead of querying per row. Only
read views prefetch: a POST re-checks preconditions against the locked row,
so it never reads this request cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from flask import g, has_request_context
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from console.db import one_of
from console.inventory.models import InventoryReservation, ReservationStatus
from console.orders.models import Order
from console.payments.models import MoneyMovement, MovementStatus, Payment, PaymentStatus

CAPTURED = [PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED]


@dataclass
class OrderFacts:
    order_ids: set[int] = field(default_factory=set)
    # Strong references for the request: the session's identity map holds objects
    # weakly, and a precondition that looks an order up by id (`Session.get`) after
    # the page's own list of orders is gone must find it there, not query again.
    orders: dict[int, Order] = field(default_factory=dict)
    payments: dict[int, Payment] = field(default_factory=dict)
    reservations: dict[int, list[InventoryReservation]] = field(default_factory=dict)
    in_flight: set[str] = field(default_factory=set)


def prefetch(s: Session, orders: Sequence[Order]) -> None:
    """Load the facts for every order on the page in three queries."""
    if not orders or not has_request_context():
        return
    facts = OrderFacts(order_ids={o.id for o in orders}, orders={o.id: o for o in orders})
    by_intent = {o.payment_intent_id: o.id for o in orders if o.payment_intent_id}
    for payment in s.scalars(
        select(Payment)
        .where(
            or_(
                one_of(Payment.order_id, facts.order_ids),
                one_of(Payment.payment_intent_id, by_intent),
            ),
            Payment.status.in_(CAPTURED),
        )
        .order_by(Payment.id)
    ):
        order_id = payment.order_id or by_intent.get(payment.payment_intent_id)
        if order_id is not None:
            facts.payments[order_id] = payment  # the newest wins, as in the query
    for reservation in s.scalars(
        select(InventoryReservation).where(
            one_of(InventoryReservation.order_id, facts.order_ids),
            InventoryReservation.status == ReservationStatus.RESERVED,
        )
    ):
        if reservation.order_id is not None:
            facts.reservations.setdefault(reservation.order_id, []).append(reservation)
    facts.in_flight = set(
        s.scalars(
            select(MoneyMovement.target_id).where(
                MoneyMovement.target_type == "order",
                one_of(MoneyMovement.target_id, [o.external_id for o in orders]),
                MoneyMovement.status == MovementStatus.IN_FLIGHT,
            )
        )
    )
    g.order_facts = facts


def known(order: Order) -> OrderFacts | None:
    """The prefetched facts, if this request prefetched this order."""
    if not has_request_context():
        return None
    facts: OrderFacts | None = g.get("order_facts")
    if facts is not None and order.id in facts.order_ids:
        return facts
    return None
