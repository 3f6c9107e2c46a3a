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
