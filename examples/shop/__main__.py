"""`python -m examples.shop serve|seed ...`: run the reference shop, or seed it and push.

    python -m examples.shop serve --port 5100 --console-url http://127.0.0.1:5000 \\
        --api-key csk_... --webhook-secret whsec_... [--database-url postgresql://.../shop]
    python -m examples.shop seed --console-url http://127.0.0.1:5000 --api-key csk_...

`seed` writes a small storefront (stock, a coupon, orders, one of each runbook
failure) into the shop's own database and pushes it through `/api/v1`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from examples.shop.app import ReferenceShop, ShopStore, dumps, ensure_database, push

DEFAULT_DB = "postgresql://postgres@127.0.0.1:5432/shop"


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def seed_records(store: ShopStore, now: datetime | None = None) -> None:
    """One small shop: what a newcomer needs to see every queue fed by the shop."""
    now = now or datetime.now(UTC)
    ago = lambda **kw: iso(now - timedelta(**kw))  # noqa: E731
    put = store.put
    put("inventory_item", {"id": "SKU-TEA-001", "name": "Sencha tea 100 g", "stock_count": 40})
    put("inventory_item", {"id": "SKU-MUG-002", "name": "Stoneware mug", "stock_count": 14})
    for rec in (
        {"id": "MV-1", "sku": "SKU-TEA-001", "quantity_change": 40, "reason": "restock"},
        {"id": "MV-2", "sku": "SKU-MUG-002", "quantity_change": 15, "reason": "restock"},
        {"id": "MV-3", "sku": "SKU-MUG-002", "quantity_change": -3, "reason": "sale"},
    ):
        put("inventory_movement", {**rec, "created_at": ago(days=3)})
    put("coupon", {"id": "WELCOME10", "max_redemptions": 100, "redeemed_count": 3,
                   "reserved_count": 1})  # fmt: skip
    lines = [{"sku": "SKU-TEA-001", "quantity": 2, "unit_amount": 1250}]
    base = {"customer_email": "ada@example.com", "currency": "EUR", "amount": 2500,
            "lines": lines, "listing_id": "LST-TEA"}  # fmt: skip
    put(
        "order",
        {
            **base,
            "id": "SHOP-1001",
            "status": "paid",
            "paid_at": ago(minutes=40),
            "payment_intent_id": "pi_shop_1001",
            "created_at": ago(minutes=45),
        },
    )
    put(
        "order",
        {
            **base,
            "id": "SHOP-1002",
            "status": "confirmed",
            "paid_at": ago(days=2),
            "customer_email": "grace@example.com",
            "payment_intent_id": "pi_shop_1002",
            "seller_email": "maker@example.com",
            "created_at": ago(days=2),
        },
    )
    put(
        "order",
        {
            **base,
            "id": "SHOP-1003",
            "status": "processing",
            "paid_at": ago(hours=5),
            "customer_email": "alan@example.com",
            "supplier": "Leaf & Co",
            "payment_intent_id": "pi_shop_1003",
            "created_at": ago(hours=5),
        },
    )
    put("order", {**base, "id": "SHOP-1004", "status": "pending",
                  "customer_email": "linus@example.com", "created_at": ago(minutes=5)})  # fmt: skip
    put(
        "reservation",
        {
            "id": "RES-1001",
            "order_id": "SHOP-1001",
            "sku": "SKU-TEA-001",
            "quantity": 2,
            "status": "reserved",
            "created_at": ago(minutes=45),
        },
    )
    put(
        "invoice",
        {
            "id": "INV-SHOP-1002",
            "order_id": "SHOP-1002",
            "amount": 2500,
            "currency": "EUR",
            "status": "failed",
            "attempts": 6,
            "last_error": "provider answered 503",
            "transmissions": [
                {
                    "id": "TX-1002-6",
                    "attempt": 6,
                    "started_at": ago(hours=3),
                    "finished_at": ago(hours=3),
                    "response_status": 503,
                    "succeeded": False,
                    "error_payload": {"error": "Service Unavailable"},
                }
            ],
        },
    )
    put(
        "payout",
        {
            "id": "PO-SHOP-1002",
            "order_id": "SHOP-1002",
            "amount": 2100,
            "currency": "EUR",
            "seller": {
                "email": "maker@example.com",
                "name": "Maker Studio",
                "connected_account": "acct_shopmaker1",
            },
            "protection_ends_at": ago(days=1),
            "delivery_confirmed_at": ago(days=1),
        },
    )
    put(
        "coupon_reservation",
        {
            "id": "CR-77",
            "coupon": "WELCOME10",
            "order_id": "SHOP-1004",
            "status": "reserved",
            "expires_at": ago(hours=2),
        },
    )
    put(
        "supplier_sync",
        {
            "id": "SYNC-2026-12-01",
            "supplier": "Leaf & Co",
            "status": "failed",
            "started_at": ago(hours=1),
            "finished_at": ago(minutes=58),
            "items_synced": 120,
            "error": "HTTP 502 from supplier on page 3 of 4",
        },
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.shop", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("serve", "seed"):
        p = sub.add_parser(name)
        p.add_argument("--console-url", required=True)
        p.add_argument("--api-key", default=os.environ.get("SHOP_CONSOLE_API_KEY", ""))
        p.add_argument("--database-url", default=os.environ.get("SHOP_DATABASE_URL", DEFAULT_DB))
    serve = sub.choices["serve"]
    serve.add_argument("--port", type=int, default=5100)
    serve.add_argument("--webhook-secret", default=os.environ.get("SHOP_WEBHOOK_SECRET"))
    args = parser.parse_args(argv)
    if not args.api_key:
        parser.error("--api-key (or SHOP_CONSOLE_API_KEY) is required")
    if args.command == "seed":
        ensure_database(args.database_url)
        store = ShopStore(args.database_url)
        seed_records(store)
        from examples.shop.app import ConsoleClient

        summary: dict[str, Any] = push(store, ConsoleClient(args.console_url, args.api_key))
        print(dumps(summary))
        return 0
    shop = ReferenceShop.start(
        database_url=args.database_url,
        console_url=args.console_url,
        api_key=args.api_key,
        webhook_secret=args.webhook_secret,
        port=args.port,
    )
    print(f"reference shop at {shop.url} (webhooks: {shop.webhook_url})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        shop.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
