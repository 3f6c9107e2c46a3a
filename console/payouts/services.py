"""Seller payout state changes driven by Stripe (disputes, transfers)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from console.orders.models import Order
from console.payments.handlers import Unprocessable, handles
from console.payments.models import Payment
from console.payouts.models import DisputeStatus, PayoutStatus, SellerPayout


def _order_for_charge(s: Session, charge_id: str | None, pi_id: str | None) -> Order | None:
    payment = None
    if pi_id:
        payment = s.scalar(select(Payment).where(Payment.payment_intent_id == pi_id))
    if payment is None and charge_id:
        payment = s.scalar(select(Payment).where(Payment.charge_id == charge_id))
    if payment is not None and payment.order_id is not None:
        return s.get(Order, payment.order_id)
    if pi_id:
        return s.scalar(select(Order).where(Order.payment_intent_id == pi_id))
    return None


@handles("charge.dispute.created")
def on_dispute_created(s: Session, event: dict[str, Any]) -> None:
    """A dispute blocks the seller's payout until it is resolved (runbook 003)."""
    dispute = event["data"]["object"]
    order = _order_for_charge(s, dispute.get("charge"), dispute.get("payment_intent"))
    if order is None:
        raise Unprocessable(f"no order for disputed charge {dispute.get('charge')}")
    opened = dispute.get("created")
    opened_at = datetime.fromtimestamp(opened, UTC) if isinstance(opened, int) else None
    for payout in s.scalars(
        select(SellerPayout).where(SellerPayout.order_id == order.id).with_for_update()
    ):
        if payout.status != PayoutStatus.RELEASED:
            payout.dispute_status = DisputeStatus.OPEN
            payout.dispute_opened_at = payout.dispute_opened_at or opened_at


@handles("transfer.created")
def on_transfer_created(s: Session, event: dict[str, Any]) -> None:
    """Record a transfer Stripe made for a payout (e.g. one our commit missed)."""
    transfer = event["data"]["object"]
    ref = (transfer.get("metadata") or {}).get("payout_id")
    payout = None
    if isinstance(ref, str) and ref:
        payout = s.scalar(
            select(SellerPayout).where(SellerPayout.external_id == ref).with_for_update()
        )
    if payout is None:
        raise Unprocessable(f"no payout referenced by transfer {transfer.get('id')}")
    if payout.stripe_transfer_id is None:
        payout.stripe_transfer_id = transfer["id"]
