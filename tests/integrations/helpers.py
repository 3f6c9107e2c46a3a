"""Helpers for the shop-connection tests: API keys and one valid record of every kind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from console import db
from console.integrations.keys import SCOPES, issue_key

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def make_key(app, scopes=SCOPES, name="storefront", shop="Test shop") -> str:
    with app.app_context():
        s = db.session()
        issued = issue_key(s, name=name, shop=shop, scopes=list(scopes), actor_sub="sub-admin-1")
        s.commit()
        return issued.token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def records(n: str, at: datetime = T0) -> dict[str, dict[str, Any]]:
    """One valid record per API path, in an order where references exist first."""
    ts = iso(at)
    old = iso(at - timedelta(days=1))
    return {
        "inventory-items": {
            "id": f"SKU-{n}",
            "name": "Sencha",
            "stock_count": 10,
            "updated_at": ts,
        },
        "coupons": {
            "id": f"CPN-{n}",
            "max_redemptions": 5,
            "redeemed_count": 1,
            "reserved_count": 1,
            "updated_at": ts,
        },
        "orders": {
            "id": f"ORD-{n}",
            "status": "paid",
            "customer_email": f"b{n}@example.com",
            "amount": 2500,
            "currency": "eur",
            "payment_intent_id": f"pi_{n}",
            "listing_id": f"LST-{n}",
            "paid_at": old,
            "updated_at": ts,
            "lines": [{"sku": f"SKU-{n}", "quantity": 2, "unit_amount": 1250}],
        },
        "inventory-reservations": {
            "id": f"RES-{n}",
            "order_id": f"ORD-{n}",
            "sku": f"SKU-{n}",
            "quantity": 2,
            "status": "reserved",
            "updated_at": ts,
        },
        "invoices": {
            "id": f"INV-{n}",
            "order_id": f"ORD-{n}",
            "amount": 2500,
            "currency": "EUR",
            "status": "failed",
            "attempts": 2,
            "last_error": "provider 503",
            "updated_at": ts,
            "transmissions": [
                {
                    "id": f"TX-{n}-1",
                    "attempt": 1,
                    "started_at": old,
                    "response_status": 503,
                    "succeeded": False,
                    "error_payload": {"error": "unavailable"},
                }
            ],
        },
        "payouts": {
            "id": f"PO-{n}",
            "order_id": f"ORD-{n}",
            "amount": 2000,
            "currency": "EUR",
            "seller": {
                "email": f"seller{n}@example.com",
                "name": "Maker",
                "connected_account": f"acct_{n}x",
            },
            "protection_ends_at": old,
            "delivery_confirmed_at": old,
            "updated_at": ts,
        },
        "inventory-movements": {
            "id": f"MV-{n}",
            "sku": f"SKU-{n}",
            "quantity_change": 10,
            "reason": "restock",
            "updated_at": ts,
        },
        "coupon-reservations": {
            "id": f"CR-{n}",
            "coupon": f"CPN-{n}",
            "order_id": f"ORD-{n}",
            "status": "reserved",
            "expires_at": ts,
            "updated_at": ts,
        },
        "supplier-sync-runs": {
            "id": f"SYNC-{n}",
            "supplier": "Leaf & Co",
            "status": "failed",
            "started_at": old,
            "items_synced": 3,
            "error": "HTTP 502 page 3",
            "updated_at": ts,
        },
    }


# A field each kind may change in an update, and its new value.
CHANGES = {
    "inventory-items": ("stock_count", 11),
    "coupons": ("reserved_count", 0),
    "orders": ("customer_email", "new@example.com"),
    "inventory-reservations": ("quantity", 3),
    "invoices": ("last_error", "provider 500"),
    "payouts": ("amount", 2100),
    "coupon-reservations": ("status", "expired"),
    "supplier-sync-runs": ("items_synced", 4),
}
