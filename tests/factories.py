"""Small factories for tests: one valid object per call, overridable."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy.orm import Session

from console.db import utcnow
from console.orders.models import Order, OrderStatus

_seq = itertools.count(1)


def make_order(s: Session, **fields: Any) -> Order:
    n = next(_seq)
    values: dict[str, Any] = {
        "external_id": f"ORD-T{n:05d}",
        "status": OrderStatus.PAID,
        "customer_email": f"buyer{n}@example.com",
        "amount": 4200,
        "currency": "EUR",
        "payment_intent_id": f"pi_test_{n:05d}",
        "paid_at": utcnow(),
    }
    values.update(fields)
    order = Order(**values)
    s.add(order)
    s.flush()
    return order


def make_payout(s: Session, **fields: Any) -> Any:
    """An eligible payout of a seller whose account can receive transfers."""
    from datetime import timedelta

    from console.payouts.models import PayoutStatus, Seller, SellerPayout

    n = next(_seq)
    account = fields.pop("destination_account", f"acct_test_{n:05d}")
    seller = Seller(email=f"seller{n}@example.com", stripe_account_id=account)
    s.add(seller)
    order = make_order(s, status=OrderStatus.DELIVERED)
    values: dict[str, Any] = {
        "external_id": f"PO-T{n:05d}",
        "order_id": order.id,
        "seller_id": 0,
        "amount": 2500,
        "currency": "EUR",
        "destination_account": account,
        "status": PayoutStatus.ELIGIBLE,
        "protection_ends_at": utcnow() - timedelta(days=1),
        "delivery_confirmed_at": utcnow() - timedelta(days=2),
    }
    values.update(fields)
    s.flush()
    values["seller_id"] = seller.id
    payout = SellerPayout(**values)
    s.add(payout)
    s.flush()
    return payout
