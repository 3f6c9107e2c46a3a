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


def make_item(
    s: Session, *, stock: int = 100, ledger: tuple[int, ...] = (95,), **fields: Any
) -> Any:
    """An inventory item with ledger entries; drifting when stock != sum(ledger)."""
    from console.inventory.models import InventoryItem, InventoryLedgerEntry, LedgerReason

    n = next(_seq)
    item = InventoryItem(
        sku=fields.pop("sku", f"SKU-T{n:05d}"), name="Test item", stock_count=stock
    )
    s.add(item)
    s.flush()
    for qty in ledger:
        s.add(
            InventoryLedgerEntry(
                sku=item.sku,
                quantity_change=qty,
                reason=LedgerReason.RESTOCK if qty > 0 else LedgerReason.SALE,
                reference_id=f"PO-T{n}",
            )
        )
    s.flush()
    s.refresh(item)
    return item


def make_coupon(
    s: Session, *, reserved_count: int | None = None, expired: int = 1, live: int = 0, **fields: Any
) -> Any:
    """A coupon holding `expired` leaked and `live` valid reservations."""
    from datetime import timedelta

    from console.coupons.models import Coupon, CouponReservation

    n = next(_seq)
    coupon = Coupon(
        code=fields.pop("code", f"TEST{n:05d}"),
        max_redemptions=100,
        reserved_count=expired + live if reserved_count is None else reserved_count,
        **fields,
    )
    s.add(coupon)
    s.flush()
    for i in range(expired):
        s.add(CouponReservation(coupon_id=coupon.id, expires_at=utcnow() - timedelta(hours=1 + i)))
    for i in range(live):
        s.add(
            CouponReservation(coupon_id=coupon.id, expires_at=utcnow() + timedelta(minutes=20 + i))
        )
    s.flush()
    return coupon


def make_supplier(s: Session, name: str | None = None) -> Any:
    from console.suppliers.models import Supplier

    n = next(_seq)
    supplier = Supplier(name=name or f"Test Supplier {n}")
    s.add(supplier)
    s.flush()
    return supplier


def make_waiting_order(s: Session, supplier: Any = None, **fields: Any) -> Order:
    """A paid order in processing, not forwarded, with one line."""
    from datetime import timedelta

    from console.orders.models import OrderLine

    supplier = supplier or make_supplier(s)
    order = make_order(
        s,
        status=OrderStatus.PROCESSING,
        supplier_id=supplier.id,
        updated_at=fields.pop("updated_at", utcnow() - timedelta(hours=2)),
        **fields,
    )
    s.add(OrderLine(order_id=order.id, sku="SKU-0002", quantity=2, unit_amount=2100))
    s.flush()
    return order


def make_failed_run(s: Session, supplier: Any = None, **fields: Any) -> Any:
    """A failed catalogue sync that stopped at page 3 of 4 after 100 products."""
    from datetime import timedelta

    from console.suppliers.models import SupplierSyncRun, SyncStatus

    supplier = supplier or make_supplier(s)
    values: dict[str, Any] = {
        "supplier_id": supplier.id,
        "status": SyncStatus.FAILED,
        "started_at": utcnow() - timedelta(minutes=30),
        "finished_at": utcnow() - timedelta(minutes=29),
        "start_page": 1,
        "pages_done": 2,
        "pages_total": 4,
        "failed_page": 3,
        "retryable": True,
        "items_synced": 100,
        "error": "HTTP 502 from the supplier API on page 3 of 4",
    }
    values.update(fields)
    run = SupplierSyncRun(**values)
    s.add(run)
    s.flush()
    return run
