"""The stuck queue's indexed form returns what the straightforward query returns.

The pages and the dashboard count read `holds_stock` / `payment_succeeded`
(kept by the triggers of migration 0007), literal index predicates and a count
computed as "the union minus the grace window" (console/orders/queries.py).
Here each generated set of orders, payments and reservations (inserted, then
changed again, so the triggers see updates and deletes too) is checked against
the plain definition: EXISTS subqueries, the five reasons OR-ed, one COUNT(*).
The keyset pages, walked to the end in every sort and direction, give the same
rows in the same order as one ORDER BY over the plain condition.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import and_, delete, exists, func, or_, select, update

from console import db
from console.db import utcnow
from console.inventory.models import InventoryReservation, ReservationStatus
from console.orders.models import Order, OrderStatus
from console.orders.queries import REASONS, WEBHOOK_GRACE, count_stuck, stuck_condition
from console.pagination import SortOption, keyset_page
from console.payments.models import Payment, PaymentStatus
from console.queues import queue_counts
from tests.property.conftest import SCALE

NOW_OFFSETS = [timedelta(minutes=m) for m in (-600, -30, -11, -9, -1, 0)] + [None]

order_st = st.fixed_dictionaries(
    {
        "status": st.sampled_from(list(OrderStatus)),
        "mismatch": st.booleans(),
        "paid": st.sampled_from(NOW_OFFSETS),
        "processed": st.booleans(),
        "forwarded": st.booleans(),
        "amount": st.integers(1, 5),  # few values: ties on the sort column
        "created": st.integers(0, 4),
        "reservations": st.lists(st.sampled_from(list(ReservationStatus)), max_size=2),
        "payments": st.lists(st.sampled_from(list(PaymentStatus)), max_size=2),
        # After insertion: change the first reservation / payment (None: leave it; "delete").
        "res_change": st.sampled_from([None, "delete", *ReservationStatus]),
        "pay_change": st.sampled_from([None, "delete", *PaymentStatus]),
    }
)


def plain_predicates(now):  # type: ignore[no-untyped-def]
    """The reasons as first written: EXISTS over the children, no derived columns."""
    held = exists().where(
        InventoryReservation.order_id == Order.id,
        InventoryReservation.status == ReservationStatus.RESERVED,
    )
    succeeded = exists().where(
        Payment.order_id == Order.id, Payment.status == PaymentStatus.SUCCEEDED
    )
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
            Order.status.in_([OrderStatus.PAID, OrderStatus.CONFIRMED]), held
        ),
        "not_forwarded": and_(
            Order.status == OrderStatus.PROCESSING, Order.supplier_forwarded_at.is_(None)
        ),
        "payment_pending_order": and_(Order.status == OrderStatus.PENDING, succeeded),
    }


def insert(s, specs, now) -> None:  # type: ignore[no-untyped-def]
    s.execute(delete(InventoryReservation))
    s.execute(delete(Payment))
    s.execute(
        update(Order).values(status=OrderStatus.CANCELLED, amount_mismatch=False)
    )  # earlier examples' orders: out of every reason
    for n, spec in enumerate(specs):
        order = Order(
            external_id=f"ORD-P{utcnow().timestamp():.6f}-{n}",
            status=spec["status"],
            customer_email=f"p{n}@example.com",
            amount=spec["amount"] * 100,
            currency="EUR",
            amount_mismatch=spec["mismatch"],
            paid_at=None if spec["paid"] is None else now + spec["paid"],
            webhook_processed_at=now if spec["processed"] else None,
            supplier_forwarded_at=now if spec["forwarded"] else None,
            created_at=now - timedelta(hours=spec["created"]),
        )
        s.add(order)
        s.flush()
        reservations = [
            InventoryReservation(
                external_id=f"R-{order.id}-{i}",
                order_id=order.id,
                sku="SKU-PROP",
                quantity=1,
                status=status,
            )
            for i, status in enumerate(spec["reservations"])
        ]
        payments = [
            Payment(
                payment_intent_id=f"pi_p_{order.id}_{i}",
                order_id=order.id,
                amount=order.amount,
                currency="EUR",
                status=status,
            )
            for i, status in enumerate(spec["payments"])
        ]
        s.add_all(reservations + payments)
        s.flush()
        for rows, change in ((reservations, spec["res_change"]), (payments, spec["pay_change"])):
            if rows and change == "delete":
                s.delete(rows[0])
            elif rows and change is not None:
                rows[0].status = change
        s.flush()


@settings(max_examples=40 * SCALE)
@given(specs=st.lists(order_st, min_size=0, max_size=14))
def test_stuck_counts_and_pages_match_the_plain_query(app, specs):
    with app.app_context():
        s = db.session()
        from console.inventory.models import InventoryItem

        if s.scalar(select(InventoryItem.id).where(InventoryItem.sku == "SKU-PROP")) is None:
            s.add(InventoryItem(sku="SKU-PROP", name="prop", stock_count=0))
            s.flush()
        now = utcnow()
        insert(s, specs, now)
        plain = plain_predicates(now)
        plain_any = or_(*plain.values())

        expected = s.scalar(select(func.count()).select_from(Order).where(plain_any))
        assert count_stuck(s, now) == expected
        # The dashboard's one statement (generic plan, `now` a parameter) agrees.
        assert queue_counts(s, now).stuck_orders == expected
        for reason in REASONS:
            want = set(s.scalars(select(Order.id).where(plain[reason])))
            got = set(s.scalars(select(Order.id).where(stuck_condition(now, reason))))
            assert got == want, reason
        extra = set(s.scalars(select(Order.id).where(stuck_condition(now)))) ^ set(
            s.scalars(select(Order.id).where(plain_any))
        )
        assert not extra, extra

        sorts = [
            SortOption("created", "Age", Order.created_at),
            SortOption("amount", "Amount", Order.amount),
        ]
        for sort, column in (("created", Order.created_at), ("amount", Order.amount)):
            for direction in ("asc", "desc"):
                order_by = (
                    (column.asc(), Order.id.asc())
                    if direction == "asc"
                    else (column.desc(), Order.id.desc())
                )
                want_ids = list(s.scalars(select(Order.id).where(plain_any).order_by(*order_by)))
                got_ids: list[int] = []
                args = {"sort": sort, "dir": direction, "limit": "3"}
                while True:
                    page = keyset_page(
                        s,
                        select(Order).where(stuck_condition(now)),
                        id_column=Order.id,
                        sort_options=sorts,
                        args=args,
                        default_sort="created",
                    )
                    got_ids += [o.id for o in page.rows]
                    if not page.next_cursor:
                        break
                    args = {**args, "after": page.next_cursor}
                assert got_ids == want_ids, (sort, direction)
