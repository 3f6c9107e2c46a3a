"""`orders.holds_stock` / `payment_succeeded` follow the children, whoever writes (0007)."""

from __future__ import annotations

from sqlalchemy import text

from console import db
from console.inventory.models import InventoryItem, InventoryReservation, ReservationStatus
from console.orders.models import OrderStatus
from console.payments.models import Payment, PaymentStatus
from tests.factories import make_order


def facts(s, order_id: int) -> tuple[bool, bool]:  # type: ignore[no-untyped-def]
    row = s.execute(
        text("SELECT holds_stock, payment_succeeded FROM orders WHERE id = :id"), {"id": order_id}
    ).one()
    return bool(row[0]), bool(row[1])


def test_reservations_and_payments_keep_the_order_facts(app):
    with app.app_context():
        s = db.session()
        s.add(InventoryItem(sku="SKU-FACTS", name="facts", stock_count=0))
        a = make_order(s, status=OrderStatus.PENDING)
        b = make_order(s, status=OrderStatus.PENDING)
        assert facts(s, a.id) == (False, False)

        r1, r2 = (
            InventoryReservation(
                external_id=f"R-FACTS-{i}",
                order_id=a.id,
                sku="SKU-FACTS",
                quantity=1,
                status=ReservationStatus.RESERVED,
            )
            for i in (1, 2)
        )
        s.add_all([r1, r2])
        s.flush()
        assert facts(s, a.id)[0] is True
        r1.status = ReservationStatus.CONFIRMED
        s.flush()
        assert facts(s, a.id)[0] is True  # r2 still holds stock
        r2.order_id = b.id  # moved to another order
        s.flush()
        assert facts(s, a.id)[0] is False and facts(s, b.id)[0] is True
        s.delete(r2)
        s.flush()
        assert facts(s, b.id)[0] is False

        p = Payment(
            payment_intent_id="pi_facts_1",
            order_id=a.id,
            amount=100,
            currency="EUR",
            status=PaymentStatus.PROCESSING,
        )
        s.add(p)
        s.flush()
        assert facts(s, a.id)[1] is False
        p.status = PaymentStatus.SUCCEEDED
        s.flush()
        assert facts(s, a.id)[1] is True
        p.status = PaymentStatus.REFUNDED
        s.flush()
        assert facts(s, a.id)[1] is False
        p.status = PaymentStatus.SUCCEEDED
        s.flush()
        s.delete(p)
        s.flush()
        assert facts(s, a.id)[1] is False
