"""Order state transitions; the only place that changes an order's status.

Transitions only move forward: a late or out-of-order event never takes an
order back. `confirmed`, not `paid`, is the finalization state (runbook 002).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from console.db import utcnow
from console.inventory.models import InventoryReservation, ReservationStatus
from console.ops.metrics import PAYMENT_FAILURES
from console.orders.models import Order, OrderStatus
from console.payments.handlers import Unprocessable, handles, touches
from console.payments.models import Payment, PaymentStatus

ORDER_RANK = {
    OrderStatus.PENDING: 0,
    OrderStatus.PAID: 1,
    OrderStatus.CONFIRMED: 2,
    OrderStatus.PROCESSING: 3,
    OrderStatus.FULFILLED: 4,
    OrderStatus.DELIVERED: 5,
    OrderStatus.COMPLETED: 6,
    OrderStatus.CANCELLED: 9,
    OrderStatus.REFUNDED: 9,
}


def find_order_for_intent(s: Session, pi: dict[str, Any], *, lock: bool) -> Order | None:
    """The order a PaymentIntent pays for: by PI id, then by metadata order id."""
    stmt = select(Order).where(Order.payment_intent_id == pi["id"])
    if lock:
        stmt = stmt.with_for_update()
    order = s.scalar(stmt)
    if order is None:
        ref = (pi.get("metadata") or {}).get("order_id")
        if isinstance(ref, str) and ref:
            stmt = select(Order).where(Order.external_id == ref)
            if lock:
                stmt = stmt.with_for_update()
            order = s.scalar(stmt)
    return order


# Payments only move forward too: a late or redelivered event never takes one back
# (a "declined" attempt arriving after the success, a success after the refund).
PAYMENT_RANK = {
    PaymentStatus.REQUIRES_PAYMENT_METHOD: 0,
    PaymentStatus.FAILED: 0,
    PaymentStatus.PROCESSING: 1,
    PaymentStatus.CANCELED: 1,
    PaymentStatus.SUCCEEDED: 2,
    PaymentStatus.PARTIALLY_REFUNDED: 3,
    PaymentStatus.REFUNDED: 4,
}


def advance_payment(payment: Payment, status: PaymentStatus) -> None:
    """Move the payment's status forward only (equal rank: the newer word wins)."""
    if PAYMENT_RANK[status] >= PAYMENT_RANK[payment.status]:
        payment.status = status


def upsert_payment(s: Session, order: Order | None, pi: dict[str, Any]) -> Payment:
    payment = s.scalar(
        select(Payment).where(Payment.payment_intent_id == pi["id"]).with_for_update()
    )
    status = _payment_status(pi)
    if payment is None:
        payment = Payment(
            payment_intent_id=pi["id"],
            order_id=order.id if order else None,
            amount=int(pi.get("amount") or 0),
            currency=str(pi.get("currency") or "").upper(),
            status=status,
            amount_refunded=0,
        )
        s.add(payment)
    else:
        if order is not None and payment.order_id is None:
            payment.order_id = order.id
        advance_payment(payment, status)
    charge = pi.get("latest_charge")
    if isinstance(charge, dict):
        payment.charge_id = charge.get("id")
        refunded = int(charge.get("amount_refunded") or 0)
        if refunded > payment.amount_refunded:
            payment.amount_refunded = refunded
            advance_payment(payment, _refund_status(refunded, payment.amount))
    elif isinstance(charge, str):
        payment.charge_id = charge
    return payment


def _refund_status(refunded: int, amount: int) -> PaymentStatus:
    return PaymentStatus.REFUNDED if refunded >= amount else PaymentStatus.PARTIALLY_REFUNDED


def _payment_status(pi: dict[str, Any]) -> PaymentStatus:
    raw = pi.get("status")
    if raw == "succeeded":
        return PaymentStatus.SUCCEEDED
    if raw == "canceled":
        return PaymentStatus.CANCELED
    if raw == "processing":
        return PaymentStatus.PROCESSING
    if pi.get("last_payment_error"):
        return PaymentStatus.FAILED
    return PaymentStatus.REQUIRES_PAYMENT_METHOD


def amount_matches(order: Order, pi: dict[str, Any]) -> bool:
    received = pi.get("amount_received") or pi.get("amount")
    return int(received or 0) == order.amount and str(pi.get("currency", "")).upper() == (
        order.currency.upper()
    )


def confirm_paid_order(s: Session, order: Order, pi: dict[str, Any]) -> str:
    """Apply a verified, succeeded PaymentIntent to its order; return what happened.

    On an amount or currency mismatch the order is flagged and never confirmed
    (possible fraud, runbook 002): nothing retries it automatically.
    """
    now = utcnow()
    payment = upsert_payment(s, order, pi)
    if pi.get("status") != "succeeded":
        raise Unprocessable(f"PaymentIntent {pi['id']} is {pi.get('status')}, not succeeded")
    payment.verified_amount = int(pi.get("amount_received") or pi.get("amount") or 0)
    payment.verified_currency = str(pi.get("currency", "")).upper()
    payment.verified_at = now
    if not amount_matches(order, pi):
        order.amount_mismatch = True
        order.webhook_processed_at = order.webhook_processed_at or now
        return "amount_mismatch"
    if ORDER_RANK[order.status] <= ORDER_RANK[OrderStatus.PAID]:
        order.status = OrderStatus.CONFIRMED
        order.paid_at = order.paid_at or now
        order.confirmed_at = now
    order.webhook_processed_at = order.webhook_processed_at or now
    confirm_reservations(s, order)
    return "confirmed"


def confirm_reservations(s: Session, order: Order) -> int:
    reservations = s.scalars(
        select(InventoryReservation)
        .where(
            InventoryReservation.order_id == order.id,
            InventoryReservation.status == ReservationStatus.RESERVED,
        )
        .with_for_update()
    ).all()
    now = utcnow()
    for r in reservations:
        r.status = ReservationStatus.CONFIRMED
        r.confirmed_at = now
    return len(reservations)


@touches
def orders_touched(s: Session, event: dict[str, Any]) -> list[Order]:
    """The order an event is about (by PaymentIntent or checkout session), for the audit."""
    obj = (event.get("data") or {}).get("object") or {}
    kind = obj.get("object")
    pi_id = obj.get("id") if kind == "payment_intent" else obj.get("payment_intent")
    conditions = []
    if isinstance(pi_id, str):
        conditions.append(Order.payment_intent_id == pi_id)
    if kind == "checkout.session" and isinstance(obj.get("id"), str):
        conditions.append(Order.checkout_session_id == obj["id"])
    if not conditions:
        return []
    return list(s.scalars(select(Order).where(or_(*conditions))).all())


@handles("payment_intent.succeeded")
def on_payment_intent_succeeded(s: Session, event: dict[str, Any]) -> None:
    pi = event["data"]["object"]
    order = find_order_for_intent(s, pi, lock=True)
    if order is None:
        upsert_payment(s, None, pi)
        raise Unprocessable(
            f"no order references {pi['id']}: reconciliation will list it as "
            "'Stripe paid but no order'"
        )
    confirm_paid_order(s, order, pi)


@handles("payment_intent.payment_failed")
def on_payment_intent_failed(s: Session, event: dict[str, Any]) -> None:
    pi = event["data"]["object"]
    order = find_order_for_intent(s, pi, lock=True)
    payment = upsert_payment(s, order, pi)
    if PAYMENT_RANK[payment.status] == 0:  # never over a success that arrived first
        payment.status = PaymentStatus.FAILED
        error = pi.get("last_payment_error") or {}
        payment.failure_message = (error.get("message") if isinstance(error, dict) else None) or (
            "payment failed"
        )
    PAYMENT_FAILURES.inc()


@handles("checkout.session.completed")
def on_checkout_completed(s: Session, event: dict[str, Any]) -> None:
    session_obj = event["data"]["object"]
    order = s.scalar(
        select(Order).where(Order.checkout_session_id == session_obj["id"]).with_for_update()
    )
    ref = session_obj.get("client_reference_id") or (session_obj.get("metadata") or {}).get(
        "order_id"
    )
    if order is None and ref:
        order = s.scalar(select(Order).where(Order.external_id == ref).with_for_update())
    if order is None:
        raise Unprocessable(f"no order for checkout session {session_obj['id']}")
    pi_id = session_obj.get("payment_intent")
    if isinstance(pi_id, str) and not order.payment_intent_id:
        order.payment_intent_id = pi_id
    if session_obj.get("payment_status") != "paid" or not isinstance(pi_id, str):
        return
    # The session says paid; the PaymentIntent is the truth about amount and status.
    from console.payments.gateway import gateway

    confirm_paid_order(s, order, gateway().retrieve_payment_intent(pi_id))


@handles("charge.refunded")
def on_charge_refunded(s: Session, event: dict[str, Any]) -> None:
    charge = event["data"]["object"]
    pi_id = charge.get("payment_intent")
    if not isinstance(pi_id, str):
        raise Unprocessable("refunded charge has no PaymentIntent")
    payment = s.scalar(select(Payment).where(Payment.payment_intent_id == pi_id).with_for_update())
    order = find_order_for_intent(s, {"id": pi_id, "metadata": charge.get("metadata")}, lock=True)
    refunded = int(charge.get("amount_refunded") or 0)
    if payment is None:
        # The refund arrived before the payment's own event: the charge says enough.
        payment = Payment(
            payment_intent_id=pi_id,
            order_id=order.id if order else None,
            charge_id=charge.get("id") if isinstance(charge.get("id"), str) else None,
            amount=int(charge.get("amount") or 0),
            currency=str(charge.get("currency") or "").upper(),
            status=PaymentStatus.SUCCEEDED,
            amount_refunded=0,
        )
        s.add(payment)
    payment.amount_refunded = max(payment.amount_refunded, refunded)
    if payment.amount_refunded:
        advance_payment(payment, _refund_status(payment.amount_refunded, payment.amount))
    if order is not None:
        order.amount_refunded = max(order.amount_refunded, refunded)
        if refunded >= order.amount and order.status != OrderStatus.REFUNDED:
            order.status = OrderStatus.REFUNDED
