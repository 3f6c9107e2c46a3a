"""Deterministic demo data: a case of every runbook failure, and volume.

Database only (no network). Idempotent: a second run finds the marker order
and changes nothing. Times are relative to now so every case shows in its
queue; everything else comes from `random.Random(42)`.
"""

from __future__ import annotations

import hashlib
import json
import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from console.coupons.models import Coupon, CouponReservation, CouponReservationStatus
from console.db import utcnow
from console.inventory.models import (
    InventoryItem,
    InventoryLedgerEntry,
    InventoryReservation,
    LedgerReason,
)
from console.invoices.models import Invoice, InvoiceStatus, InvoiceTransmission
from console.ops.models import JobRun, JobStatus
from console.orders.models import Order, OrderLine, OrderNote, OrderStatus
from console.payments.models import (
    Payment,
    PaymentStatus,
    WebhookEvent,
    WebhookRejection,
    WebhookStatus,
)
from console.payouts.models import (
    Approval,
    ApprovalItem,
    ApprovalStatus,
    DisputeStatus,
    PayoutStatus,
    Seller,
    SellerPayout,
)
from console.payouts.release import payload_hash, payout_payload
from console.reconciliation.models import (
    FindingStatus,
    FindingType,
    ReconciliationFinding,
    ReconciliationRun,
    RunStatus,
    Severity,
)
from console.suppliers.models import Supplier, SupplierSyncRun, SyncStatus

MARKER = "ORD-DEMO-0001"
FIRST = [
    "anna",
    "ben",
    "chloe",
    "david",
    "emma",
    "felix",
    "grace",
    "hugo",
    "ines",
    "jonas",
    "katja",
    "liam",
    "mia",
    "noah",
    "olivia",
    "paul",
    "quinn",
    "rosa",
    "samir",
    "tara",
]
LAST = [
    "schmidt",
    "martin",
    "rossi",
    "garcia",
    "novak",
    "jensen",
    "dubois",
    "kowalski",
    "silva",
    "murphy",
    "weber",
    "lindqvist",
    "costa",
    "meyer",
    "fischer",
]
SKUS = [f"SKU-{n:04d}" for n in range(1, 25)]
PRODUCTS = [
    "Ceramic mug",
    "Pour-over kettle",
    "Coffee grinder",
    "Espresso cups (2)",
    "Filter papers",
    "Travel tumbler",
    "Milk jug",
    "Scale",
    "Beans 1 kg",
    "Dripper",
]


def _email(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)}.{rng.choice(LAST)}{rng.randint(1, 99)}@example.com"


def _event_body(event_id: str, event_type: str, obj: dict[str, Any], created: datetime) -> str:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "api_version": "2024-06-20",
            "created": int(created.timestamp()),
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
            "data": {"object": obj},
        },
        separators=(",", ":"),
    )


def _pi(
    pi_id: str, amount: int, currency: str, status: str = "succeeded", **extra: Any
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": pi_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount if status == "succeeded" else 0,
        "currency": currency.lower(),
        "status": status,
        "metadata": {},
    }
    obj.update(extra)
    return obj


def counts(s: Session) -> dict[str, int]:
    def n(model: Any) -> int:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)

    return {
        "orders": n(Order),
        "payments": n(Payment),
        "webhook_events": n(WebhookEvent),
        "invoices": n(Invoice),
        "seller_payouts": n(SellerPayout),
        "approvals": n(Approval),
        "findings": n(ReconciliationFinding),
        "inventory_items": n(InventoryItem),
        "coupon_reservations": n(CouponReservation),
        "job_runs": n(JobRun),
    }


def seed(s: Session, volume: int = 3000) -> dict[str, int]:
    """Seed every runbook case plus `volume` healthy orders; commit; return counts."""
    if s.scalar(select(Order.id).where(Order.external_id == MARKER)) is not None:
        return {"already_seeded": 1, **counts(s)}
    rng = random.Random(42)
    now = utcnow().replace(microsecond=0)
    supplier = Supplier(name="Roastery Supplies GmbH")
    other_supplier = Supplier(name="Nordic Ceramics AB")
    s.add_all([supplier, other_supplier])
    s.flush()

    _inventory(s, rng, now)
    _volume(s, rng, now, volume, supplier.id)
    cases = _stuck_orders(s, now, supplier.id)
    _webhook_extras(s, now)
    _invoices(s, now, cases)
    _payouts(s, rng, now, cases)
    _reconciliation(s, now, cases)
    _coupons(s, now, cases)
    _jobs(s, now, supplier.id, other_supplier.id)
    s.commit()
    return counts(s)


# --------------------------------------------------------------------------- inventory


def _inventory(s: Session, rng: random.Random, now: datetime) -> None:
    items, ledger = [], []
    for i, sku in enumerate(SKUS):
        restock = rng.randint(40, 200)
        sold = rng.randint(0, restock - 10)
        returned = rng.randint(0, 3)
        stock = restock - sold + returned
        if sku in ("SKU-0007", "SKU-0013"):  # drift: someone edited stock directly
            stock += 5 if sku == "SKU-0007" else -3
        items.append({"sku": sku, "name": PRODUCTS[i % len(PRODUCTS)], "stock_count": stock})
        t = now - timedelta(days=60)
        ledger += [
            {
                "sku": sku,
                "quantity_change": restock,
                "reason": LedgerReason.RESTOCK,
                "reference_id": f"PO-{1000 + i}",
                "created_at": t,
            },
            {
                "sku": sku,
                "quantity_change": -sold,
                "reason": LedgerReason.SALE,
                "reference_id": "batch",
                "created_at": t + timedelta(days=30),
            },
        ]
        if returned:
            ledger.append(
                {
                    "sku": sku,
                    "quantity_change": returned,
                    "reason": LedgerReason.RETURN,
                    "reference_id": f"RMA-{i}",
                    "created_at": t + timedelta(days=40),
                }
            )
    s.execute(insert(InventoryItem), items)
    s.execute(insert(InventoryLedgerEntry), ledger)
    # The ledger trigger keeps each item's ledger total; a trigger also stamps when
    # the drift began (now): date the two seeded drifts back to when they happened.
    for sku, ago in (("SKU-0007", timedelta(days=3, hours=4)), ("SKU-0013", timedelta(hours=20))):
        s.execute(
            update(InventoryItem).where(InventoryItem.sku == sku).values(drift_since=now - ago)
        )
    # A checkout hold on a drifting SKU: part of what explains its difference.
    s.add(
        InventoryReservation(
            external_id="res-demo-0013",
            sku="SKU-0013",
            quantity=1,
            created_at=now - timedelta(minutes=12),
            expires_at=now + timedelta(minutes=18),
        )
    )


# --------------------------------------------------------------------------- volume


def _volume(s: Session, rng: random.Random, now: datetime, volume: int, supplier_id: int) -> None:
    """Healthy orders over 90 days: lines, succeeded payments, some processed events."""
    orders: list[dict[str, Any]] = []
    for n in range(1, volume + 1):
        created = now - timedelta(minutes=rng.randint(60, 90 * 24 * 60))
        status = rng.choice(
            [OrderStatus.COMPLETED] * 6
            + [OrderStatus.DELIVERED] * 2
            + [OrderStatus.CONFIRMED, OrderStatus.FULFILLED]
        )
        currency = rng.choice(["EUR"] * 8 + ["USD", "GBP"])
        amount = rng.randint(8, 240) * 100 + rng.choice([0, 50, 90, 99])
        paid = created + timedelta(seconds=rng.randint(20, 600))
        orders.append(
            {
                "external_id": f"ORD-{100000 + n}",
                "status": status,
                "customer_email": _email(rng),
                "amount": amount,
                "currency": currency,
                "payment_intent_id": f"pi_demo_{n:06d}",
                "checkout_session_id": f"cs_demo_{n:06d}",
                "listing_id": f"LST-{rng.randint(1, 400):04d}",
                "paid_at": paid,
                "confirmed_at": paid + timedelta(seconds=3),
                "webhook_processed_at": paid + timedelta(seconds=2),
                "supplier_id": supplier_id,
                "supplier_forwarded_at": paid + timedelta(minutes=5),
                "completed_at": paid + timedelta(days=5)
                if status == OrderStatus.COMPLETED
                else None,
                "created_at": created,
                "updated_at": paid + timedelta(minutes=rng.randint(5, 7200)),
            }
        )
    ids = list(s.scalars(insert(Order).returning(Order.id, sort_by_parameter_order=True), orders))
    lines, payments, events = [], [], []
    for order_id, o in zip(ids, orders, strict=True):
        sku = rng.choice(SKUS)
        lines.append({"order_id": order_id, "sku": sku, "quantity": 1, "unit_amount": o["amount"]})
        payments.append(
            {
                "payment_intent_id": o["payment_intent_id"],
                "order_id": order_id,
                "charge_id": "ch_" + o["payment_intent_id"][3:],
                "amount": o["amount"],
                "currency": o["currency"],
                "status": PaymentStatus.SUCCEEDED,
                "verified_amount": o["amount"],
                "verified_currency": o["currency"],
                "verified_at": o["webhook_processed_at"],
                "created_at": o["paid_at"],
                "updated_at": o["paid_at"],
            }
        )
        if order_id % 3 == 0:
            evt_id = f"evt_demo_ok_{order_id:06d}"
            obj = _pi(o["payment_intent_id"], o["amount"], o["currency"])
            events.append(
                {
                    "event_id": evt_id,
                    "type": "payment_intent.succeeded",
                    "object_id": o["payment_intent_id"],
                    "raw_body": _event_body(evt_id, "payment_intent.succeeded", obj, o["paid_at"]),
                    "status": WebhookStatus.PROCESSED,
                    "attempts": 1,
                    "stripe_created_at": o["paid_at"],
                    "received_at": o["paid_at"] + timedelta(seconds=1),
                    "processed_at": o["webhook_processed_at"],
                }
            )
    s.execute(insert(OrderLine), lines)
    s.execute(insert(Payment), payments)
    if events:
        s.execute(insert(WebhookEvent), events)
    invoices = [
        {
            "external_id": f"INV-{o['external_id'][4:]}",
            "order_id": order_id,
            "amount": o["amount"],
            "currency": o["currency"],
            "status": InvoiceStatus.TRANSMITTED,
            "attempts": 1,
            "external_ref": f"in_demo_{order_id:06d}",
            "created_at": o["paid_at"],
            "updated_at": o["paid_at"] + timedelta(minutes=2),
        }
        for order_id, o in zip(ids, orders, strict=True)
    ]
    s.execute(insert(Invoice), invoices)


# --------------------------------------------------------------------------- stuck orders


def _order(s: Session, external_id: str, **fields: Any) -> Order:
    order = Order(external_id=external_id, **fields)
    s.add(order)
    s.flush()
    return order


def _stuck_orders(s: Session, now: datetime, supplier_id: int) -> dict[str, Order]:
    cases: dict[str, Order] = {}
    # Runbook 002/003: paid, webhook failed with an error; reservation still held.
    paid = now - timedelta(minutes=47)
    o = _order(
        s,
        MARKER,
        status=OrderStatus.PAID,
        customer_email="anna.schmidt@example.com",
        amount=4200,
        currency="EUR",
        payment_intent_id="pi_demo_stuck_0001",
        checkout_session_id="cs_demo_stuck_0001",
        listing_id="LST-0042",
        paid_at=paid,
        created_at=paid - timedelta(minutes=3),
        updated_at=paid,
    )
    s.add(OrderLine(order_id=o.id, sku="SKU-0003", quantity=1, unit_amount=4200))
    s.add(
        InventoryReservation(
            external_id="res-demo-0001",
            order_id=o.id,
            sku="SKU-0003",
            quantity=1,
            created_at=paid - timedelta(minutes=3),
            expires_at=paid + timedelta(minutes=30),
        )
    )
    s.add(
        WebhookEvent(
            event_id="evt_demo_stuck_0001",
            type="payment_intent.succeeded",
            object_id="pi_demo_stuck_0001",
            raw_body=_event_body(
                "evt_demo_stuck_0001",
                "payment_intent.succeeded",
                _pi("pi_demo_stuck_0001", 4200, "eur"),
                paid,
            ),
            status=WebhookStatus.FAILED,
            attempts=3,
            last_error="OperationalError: server closed the connection unexpectedly",
            stripe_created_at=paid,
            received_at=paid + timedelta(seconds=2),
        )
    )
    cases["webhook_failed"] = o

    # Paid two hours ago; the event arrived but was never processed (worker crash).
    paid = now - timedelta(hours=2, minutes=5)
    o = _order(
        s,
        "ORD-DEMO-0002",
        status=OrderStatus.PAID,
        customer_email="ben.martin@example.com",
        amount=1899,
        currency="EUR",
        payment_intent_id="pi_demo_stuck_0002",
        paid_at=paid,
        created_at=paid - timedelta(minutes=1),
        updated_at=paid,
    )
    s.add(OrderLine(order_id=o.id, sku="SKU-0005", quantity=1, unit_amount=1899))
    s.add(
        WebhookEvent(
            event_id="evt_demo_stuck_0002",
            type="payment_intent.succeeded",
            object_id="pi_demo_stuck_0002",
            raw_body=_event_body(
                "evt_demo_stuck_0002",
                "payment_intent.succeeded",
                _pi("pi_demo_stuck_0002", 1899, "eur"),
                paid,
            ),
            # Not `received`: the job worker drains received events within a
            # second, so the seeded case is one whose automatic retries ran out.
            status=WebhookStatus.FAILED,
            attempts=8,
            last_error="handler timed out waiting for the inventory row lock; "
            "8 attempts, retries exhausted",
            stripe_created_at=paid,
            received_at=paid + timedelta(seconds=1),
        )
    )
    cases["webhook_unprocessed"] = o

    # Runbook 002: amount mismatch, possible fraud.
    paid = now - timedelta(hours=5)
    o = _order(
        s,
        "ORD-DEMO-0003",
        status=OrderStatus.PAID,
        customer_email="chloe.rossi@example.com",
        amount=12900,
        currency="EUR",
        payment_intent_id="pi_demo_mismatch_0003",
        amount_mismatch=True,
        paid_at=paid,
        webhook_processed_at=paid + timedelta(seconds=2),
        created_at=paid - timedelta(minutes=2),
        updated_at=paid,
    )
    s.add(OrderLine(order_id=o.id, sku="SKU-0009", quantity=1, unit_amount=12900))
    s.add(
        Payment(
            payment_intent_id="pi_demo_mismatch_0003",
            order_id=o.id,
            amount=1290,
            currency="EUR",
            status=PaymentStatus.SUCCEEDED,
            verified_amount=1290,
            verified_currency="EUR",
            verified_at=paid,
        )
    )
    cases["amount_mismatch"] = o

    # A second mismatch (Stripe took 9.90, the order is 99.00): the stuck-orders queue's
    # own refund case, so ORD-DEMO-0003 stays the reconciliation finding's.
    paid = now - timedelta(hours=4)
    o = _order(
        s,
        "ORD-DEMO-0013",
        status=OrderStatus.PAID,
        customer_email="jonas.lindqvist@example.com",
        amount=9900,
        currency="EUR",
        payment_intent_id="pi_demo_mismatch_0013",
        amount_mismatch=True,
        paid_at=paid,
        webhook_processed_at=paid + timedelta(seconds=2),
        created_at=paid - timedelta(minutes=2),
        updated_at=paid,
    )
    s.add(OrderLine(order_id=o.id, sku="SKU-0010", quantity=1, unit_amount=9900))
    s.add(
        Payment(
            payment_intent_id="pi_demo_mismatch_0013",
            order_id=o.id,
            amount=990,
            currency="EUR",
            status=PaymentStatus.SUCCEEDED,
            verified_amount=990,
            verified_currency="EUR",
            verified_at=paid,
        )
    )

    # Runbook 000: confirmed, but the inventory reservation was never confirmed.
    paid = now - timedelta(hours=3)
    o = _order(
        s,
        "ORD-DEMO-0004",
        status=OrderStatus.CONFIRMED,
        customer_email="david.garcia@example.com",
        amount=3450,
        currency="EUR",
        payment_intent_id="pi_demo_res_0004",
        paid_at=paid,
        confirmed_at=paid,
        webhook_processed_at=paid,
        created_at=paid,
        updated_at=paid,
    )
    s.add(OrderLine(order_id=o.id, sku="SKU-0011", quantity=2, unit_amount=1725))
    s.add(
        Payment(
            payment_intent_id="pi_demo_res_0004",
            order_id=o.id,
            amount=3450,
            currency="EUR",
            status=PaymentStatus.SUCCEEDED,
            verified_amount=3450,
            verified_currency="EUR",
            verified_at=paid,
        )
    )
    s.add(
        InventoryReservation(
            external_id="res-demo-0004", order_id=o.id, sku="SKU-0011", quantity=2, created_at=paid
        )
    )
    cases["reservation_unconfirmed"] = o

    # Runbook 001: paid, handed to processing, never forwarded to the supplier.
    paid = now - timedelta(hours=9)
    o = _order(
        s,
        "ORD-DEMO-0005",
        status=OrderStatus.PROCESSING,
        customer_email="emma.novak@example.com",
        amount=7800,
        currency="EUR",
        payment_intent_id="pi_demo_supplier_0005",
        supplier_id=supplier_id,
        paid_at=paid,
        confirmed_at=paid,
        webhook_processed_at=paid,
        created_at=paid,
        updated_at=paid,
    )
    s.add(OrderLine(order_id=o.id, sku="SKU-0002", quantity=1, unit_amount=7800))
    s.add(
        Payment(
            payment_intent_id="pi_demo_supplier_0005",
            order_id=o.id,
            amount=7800,
            currency="EUR",
            status=PaymentStatus.SUCCEEDED,
            verified_amount=7800,
            verified_currency="EUR",
            verified_at=paid,
        )
    )
    cases["not_forwarded"] = o

    # Payment failed first, the retry succeeded, the order is still pending.
    created = now - timedelta(hours=1, minutes=20)
    o = _order(
        s,
        "ORD-DEMO-0006",
        status=OrderStatus.PENDING,
        customer_email="felix.jensen@example.com",
        amount=2500,
        currency="GBP",
        payment_intent_id="pi_demo_retry_0006",
        created_at=created,
        updated_at=created,
    )
    s.add(OrderLine(order_id=o.id, sku="SKU-0014", quantity=1, unit_amount=2500))
    s.add(
        Payment(
            payment_intent_id="pi_demo_retry_0006a",
            order_id=o.id,
            amount=2500,
            currency="GBP",
            status=PaymentStatus.FAILED,
            failure_message="Your card was declined.",
            created_at=created,
        )
    )
    s.add(
        Payment(
            payment_intent_id="pi_demo_retry_0006",
            order_id=o.id,
            amount=2500,
            currency="GBP",
            status=PaymentStatus.SUCCEEDED,
            created_at=created + timedelta(minutes=4),
        )
    )
    s.add(
        OrderNote(
            order_id=o.id,
            author_sub="support@example.test",
            author_email="support@example.test",
            body="Customer says the second card went through; waiting for confirmation.",
            created_at=created + timedelta(minutes=30),
        )
    )
    cases["payment_pending_order"] = o

    # Marketplace order delivered; the seller transfer exists but the order never completed.
    delivered = now - timedelta(days=9)
    o = _order(
        s,
        "ORD-DEMO-0008",
        status=OrderStatus.DELIVERED,
        customer_email="grace.dubois@example.com",
        amount=22000,
        currency="EUR",
        payment_intent_id="pi_demo_transfer_0008",
        listing_id="LST-0808",
        seller_email="hugo.kowalski@example.com",
        paid_at=delivered - timedelta(days=5),
        confirmed_at=delivered - timedelta(days=5),
        webhook_processed_at=delivered - timedelta(days=5),
        created_at=delivered - timedelta(days=5),
        updated_at=delivered,
    )
    s.add(
        Payment(
            payment_intent_id="pi_demo_transfer_0008",
            order_id=o.id,
            amount=22000,
            currency="EUR",
            status=PaymentStatus.SUCCEEDED,
            verified_amount=22000,
            verified_currency="EUR",
            verified_at=delivered,
        )
    )
    cases["transfer_not_completed"] = o

    # Our order says paid; Stripe has no such payment.
    paid = now - timedelta(days=2)
    o = _order(
        s,
        "ORD-DEMO-0009",
        status=OrderStatus.CONFIRMED,
        customer_email="ines.silva@example.com",
        amount=5600,
        currency="EUR",
        payment_intent_id="pi_demo_missing_0009",
        paid_at=paid,
        confirmed_at=paid,
        webhook_processed_at=paid,
        created_at=paid,
        updated_at=paid,
    )
    cases["paid_no_stripe"] = o

    # Stripe took a payment no order references (the order was never created).
    s.add(
        Payment(
            payment_intent_id="pi_demo_orphan_0010",
            order_id=None,
            amount=4200,
            currency="EUR",
            status=PaymentStatus.SUCCEEDED,
            created_at=now - timedelta(days=1, hours=3),
        )
    )
    return cases


def _webhook_extras(s: Session, now: datetime) -> None:
    t = now - timedelta(hours=6)
    # A duplicate delivery: acknowledged, processed once ("Event Already Processed").
    s.add(
        WebhookEvent(
            event_id="evt_demo_dup_0001",
            type="charge.refunded",
            object_id="ch_demo_000003",
            raw_body=_event_body(
                "evt_demo_dup_0001",
                "charge.refunded",
                {
                    "id": "ch_demo_000003",
                    "object": "charge",
                    "amount_refunded": 0,
                    "payment_intent": "pi_demo_000003",
                },
                t,
            ),
            status=WebhookStatus.PROCESSED,
            attempts=1,
            deliveries=2,
            stripe_created_at=t,
            received_at=t,
            processed_at=t + timedelta(seconds=1),
        )
    )
    s.add(
        WebhookEvent(
            event_id="evt_demo_ignored_0001",
            type="customer.created",
            object_id="cus_demo_0001",
            raw_body=_event_body(
                "evt_demo_ignored_0001",
                "customer.created",
                {"id": "cus_demo_0001", "object": "customer"},
                t,
            ),
            status=WebhookStatus.IGNORED,
            attempts=1,
            stripe_created_at=t,
            received_at=t,
            processed_at=t,
        )
    )
    body = b'{"id":"evt_demo_forged_0001","type":"payment_intent.succeeded"}'
    for minutes in (35, 12):
        s.add(
            WebhookRejection(
                received_at=now - timedelta(minutes=minutes),
                reason="signature verification failed: No signatures found matching the expected "
                "signature for payload",
                source_ip="203.0.113.77",
                body_sha256=hashlib.sha256(body).hexdigest(),
                body_size=len(body),
                claimed_event_id="evt_demo_forged_0001",
            )
        )


# --------------------------------------------------------------------------- invoices


def _invoices(s: Session, now: datetime, cases: dict[str, Order]) -> None:
    provider_503: dict[str, Any] = {
        "status": 503,
        "error": "Service Unavailable",
        "message": "e-invoicing gateway maintenance window",
    }
    specs: list[tuple[str, Order, InvoiceStatus, int, datetime, datetime | None, dict[str, Any]]]
    specs = [
        (
            "INV-DEMO-0001",
            cases["reservation_unconfirmed"],
            InvoiceStatus.DRAFT,
            2,
            now - timedelta(hours=3),
            now - timedelta(minutes=20),
            provider_503,
        ),
        (
            "INV-DEMO-0002",
            cases["not_forwarded"],
            InvoiceStatus.GENERATED,
            3,
            now - timedelta(hours=5),
            now + timedelta(minutes=25),
            {
                "status": 422,
                "error": "Unprocessable Entity",
                "details": [{"field": "buyer.vat_id", "problem": "format invalid"}],
            },
        ),
        (
            "INV-DEMO-0003",
            cases["paid_no_stripe"],
            InvoiceStatus.FAILED,
            6,
            now - timedelta(days=1),
            None,
            {"status": 401, "error": "invalid_api_key", "message": "API key revoked"},
        ),
        (
            "INV-DEMO-0004",
            cases["transfer_not_completed"],
            InvoiceStatus.DRAFT,
            1,
            now - timedelta(hours=2),
            now - timedelta(minutes=5),
            {"timeout": "read timed out after 30 s"},
        ),
    ]
    for ext, order, status, attempts, updated, next_at, payload in specs:
        inv = Invoice(
            external_id=ext,
            order_id=order.id,
            amount=order.amount,
            currency=order.currency,
            status=status,
            attempts=attempts,
            next_attempt_at=next_at,
            last_error=json.dumps(payload)[:500],
            created_at=updated - timedelta(hours=1),
            updated_at=updated,
        )
        s.add(inv)
        s.flush()
        for a in range(1, attempts + 1):
            started = updated - timedelta(minutes=10 * (attempts - a + 1))
            s.add(
                InvoiceTransmission(
                    invoice_id=inv.id,
                    attempt=a,
                    started_at=started,
                    finished_at=started + timedelta(seconds=3),
                    request_summary=f"POST /v1/invoices/{ext}/send (attempt {a})",
                    response_status=payload.get("status")
                    if isinstance(payload.get("status"), int)
                    else None,
                    succeeded=False,
                    error_payload=payload,
                )
            )


# --------------------------------------------------------------------------- payouts


def _payouts(s: Session, rng: random.Random, now: datetime, cases: dict[str, Order]) -> None:
    sellers = [
        Seller(
            email="hugo.kowalski@example.com",
            name="Hugo's Ceramics",
            stripe_account_id="acct_demo_hugo",
        ),
        Seller(
            email="katja.weber@example.com",
            name="Weber Roasters",
            stripe_account_id="acct_demo_katja",
        ),
        Seller(
            email="liam.murphy@example.com",
            name="Murphy Woodworks",
            stripe_account_id="acct_demo_liam",
        ),
        Seller(
            email="rosa.costa@example.com",
            name="Costa Textiles",
            stripe_account_id="acct_demo_rosa",
            transfers_enabled=False,
        ),
    ]
    s.add_all(sellers)
    s.flush()

    def payout(
        n: int, seller: Seller, amount: int, currency: str = "EUR", **kw: Any
    ) -> SellerPayout:
        order = _order(
            s,
            f"ORD-MKT-{n:04d}",
            status=kw.pop("order_status", OrderStatus.DELIVERED),
            customer_email=_email(rng),
            amount=amount + amount // 9,
            currency=currency,
            payment_intent_id=f"pi_demo_mkt_{n:04d}",
            listing_id=f"LST-{n + 500:04d}",
            seller_email=seller.email,
            paid_at=now - timedelta(days=12),
            confirmed_at=now - timedelta(days=12),
            webhook_processed_at=now - timedelta(days=12),
            created_at=now - timedelta(days=12),
            updated_at=now - timedelta(days=2),
        )
        p = SellerPayout(
            external_id=f"PO-{n:04d}",
            order_id=order.id,
            seller_id=seller.id,
            amount=amount,
            currency=currency,
            destination_account=seller.stripe_account_id,
            protection_ends_at=kw.pop("protection_ends_at", now - timedelta(days=2)),
            delivery_confirmed_at=kw.pop("delivery_confirmed_at", now - timedelta(days=4)),
            created_at=now - timedelta(days=12),
            **kw,
        )
        s.add(p)
        s.flush()
        return p

    hugo, katja, liam, rosa = sellers
    eligible = [
        payout(1, hugo, 18000),
        payout(2, katja, 4550),
        payout(3, liam, 126000),
        payout(4, katja, 9900, "USD"),
        payout(5, hugo, 3200),
    ]
    payout(6, liam, 45000, admin_hold=True, hold_reason="Seller under KYC review, ticket OPS-2211")
    payout(
        7,
        katja,
        15000,
        dispute_status=DisputeStatus.OPEN,
        dispute_opened_at=now - timedelta(days=3),
    )
    payout(8, hugo, 8800, protection_ends_at=now + timedelta(days=4))
    payout(9, liam, 6100, delivery_confirmed_at=None, protection_ends_at=now - timedelta(hours=6))
    payout(10, rosa, 7300)  # the seller's account cannot receive transfers
    released = payout(
        11,
        hugo,
        22000 - 2200,
        status=PayoutStatus.RELEASED,
        stripe_transfer_id="tr_demo_released_0011",
        released_at=now - timedelta(days=8),
    )
    # The transfer for ORD-DEMO-0008 went out, but the order never completed.
    s.add(
        SellerPayout(
            external_id="PO-DEMO-0008",
            order_id=cases["transfer_not_completed"].id,
            seller_id=hugo.id,
            amount=19800,
            currency="EUR",
            destination_account=hugo.stripe_account_id,
            status=PayoutStatus.RELEASED,
            stripe_transfer_id="tr_demo_0008",
            released_at=now - timedelta(days=8),
            protection_ends_at=now - timedelta(days=9),
            delivery_confirmed_at=now - timedelta(days=9),
        )
    )
    del released
    # A release requested by one admin, waiting for a second (four eyes).
    chosen = eligible[:2]
    # The same payload (and hash) the console builds, so approving it works.
    s.flush()
    payload = payout_payload(chosen)
    approval = Approval(
        payload=payload,
        payload_hash=payload_hash(payload),
        status=ApprovalStatus.PENDING,
        requested_by_sub="admin@example.test",
        requested_by_email="admin@example.test",
        request_reason="Auto-release failed twice (Stripe 500); releasing by hand",
        requested_at=now - timedelta(minutes=40),
    )
    s.add(approval)
    s.flush()
    for p in chosen:
        p.status = PayoutStatus.PENDING_APPROVAL
        s.add(
            ApprovalItem(
                approval_id=approval.id,
                payout_id=p.id,
                amount=p.amount,
                currency=p.currency,
                destination_account=p.destination_account,
            )
        )


# --------------------------------------------------------------------------- reconciliation


def _reconciliation(s: Session, now: datetime, cases: dict[str, Order]) -> None:
    started = now - timedelta(hours=7)
    run = ReconciliationRun(
        filters={},
        status=RunStatus.SUCCEEDED,
        started_by_sub="cli:cron",
        started_at=started,
        finished_at=started + timedelta(seconds=41),
        scanned_stripe=3412,
        scanned_local=3398,
        stripe_calls=36,
        findings_new=5,
        findings_seen=1,
        findings_closed=1,
    )
    s.add(run)
    s.flush()
    seen = started + timedelta(seconds=30)
    f = [
        (
            FindingType.STRIPE_PAID_NO_ORDER,
            Severity.CRITICAL,
            "pi_demo_orphan_0010",
            None,
            "Stripe shows pi_demo_orphan_0010 succeeded for 42.00 EUR yesterday; no order "
            "references it.",
            "create_order",
        ),
        (
            FindingType.AMOUNT_MISMATCH,
            Severity.CRITICAL,
            "pi_demo_mismatch_0003",
            cases["amount_mismatch"],
            "Stripe received 12.90 EUR for pi_demo_mismatch_0003, but order ORD-DEMO-0003 is "
            "129.00 EUR.",
            "refund",
        ),
        (
            FindingType.ORDER_PAID_NO_STRIPE,
            Severity.HIGH,
            "pi_demo_missing_0009",
            cases["paid_no_stripe"],
            "Order ORD-DEMO-0009 is confirmed as paid with pi_demo_missing_0009, which Stripe "
            "does not know.",
            "mark_cancelled",
        ),
        (
            FindingType.TRANSFER_ORDER_NOT_COMPLETED,
            Severity.MEDIUM,
            "pi_demo_transfer_0008",
            cases["transfer_not_completed"],
            "Transfer tr_demo_0008 (198.00 EUR to acct_demo_hugo) exists, but order ORD-DEMO-0008 "
            "is still delivered, not completed.",
            "mark_completed",
        ),
        (
            FindingType.EVENT_NOT_RECEIVED,
            Severity.WARNING,
            "pi_demo_stuck_0002",
            cases["webhook_unprocessed"],
            "Stripe sent evt_demo_stuck_0002 two hours ago; it is stored, but processing "
            "failed and its retries ran out.",
            "replay_event",
        ),
    ]
    for ftype, sev, pi, order, text, fix in f:
        s.add(
            ReconciliationFinding(
                fingerprint=f"{ftype.value}:{pi}",
                type=ftype,
                severity=sev,
                status=FindingStatus.OPEN,
                explanation=text,
                suggested_action=fix,
                order_id=order.id if order else None,
                payment_intent_id=pi,
                transfer_id="tr_demo_0008"
                if ftype == FindingType.TRANSFER_ORDER_NOT_COMPLETED
                else None,
                first_seen_run_id=run.id,
                last_seen_run_id=run.id,
                first_seen_at=seen,
                last_seen_at=seen,
            )
        )
    s.add(
        ReconciliationFinding(
            fingerprint="refund_not_reflected:pi_demo_000042",
            type=FindingType.REFUND_NOT_REFLECTED,
            severity=Severity.HIGH,
            status=FindingStatus.DISMISSED,
            explanation="Stripe shows a 5.00 EUR refund on pi_demo_000042 not recorded here.",
            suggested_action="record_refund",
            payment_intent_id="pi_demo_000042",
            first_seen_run_id=run.id,
            last_seen_run_id=run.id,
            first_seen_at=seen - timedelta(days=3),
            last_seen_at=seen,
            closed_at=seen,
            closed_by_sub="admin@example.test",
            close_reason="Goodwill refund made in the Dashboard by finance, ticket FIN-88",
        )
    )
    s.add(
        ReconciliationFinding(
            fingerprint="event_not_received:pi_demo_000077",
            type=FindingType.EVENT_NOT_RECEIVED,
            severity=Severity.WARNING,
            status=FindingStatus.AUTO_CLOSED,
            explanation="Stripe sent evt for pi_demo_000077; it arrived late and was processed.",
            payment_intent_id="pi_demo_000077",
            first_seen_run_id=run.id,
            last_seen_run_id=run.id,
            first_seen_at=seen - timedelta(days=1),
            last_seen_at=seen - timedelta(days=1),
            closed_at=seen,
            close_reason="not seen by run 1",
        )
    )


# --------------------------------------------------------------------------- coupons, jobs


def _coupons(s: Session, now: datetime, cases: dict[str, Order]) -> None:
    # (code, leaked, active, reserved count off by): leaks for support to release;
    # SUMMER15 counts 5 reservations too many (a double increment) for an admin to repair.
    specs = [
        ("WELCOME10", 3, 1, 0),
        ("SPRING25", 2, 0, 0),
        ("VIP50", 0, 2, 0),
        ("FREESHIP", 1, 3, 0),
        ("SUMMER15", 0, 2, 5),
    ]
    for code, leaked, active, off_by in specs:
        coupon = Coupon(
            code=code,
            max_redemptions=500,
            redeemed_count=40,
            reserved_count=leaked + active + off_by,
        )
        s.add(coupon)
        s.flush()
        for i in range(leaked):
            s.add(
                CouponReservation(
                    coupon_id=coupon.id,
                    status=CouponReservationStatus.RESERVED,
                    created_at=now - timedelta(hours=5 + i),
                    expires_at=now - timedelta(hours=4 + i),
                )
            )
        for i in range(active):
            s.add(
                CouponReservation(
                    coupon_id=coupon.id,
                    status=CouponReservationStatus.RESERVED,
                    created_at=now - timedelta(minutes=5 + i),
                    expires_at=now + timedelta(minutes=25 - i),
                )
            )
        s.add(
            CouponReservation(
                coupon_id=coupon.id,
                order_id=cases["webhook_failed"].id,
                status=CouponReservationStatus.REDEEMED,
                created_at=now - timedelta(days=1),
                expires_at=now - timedelta(days=1) + timedelta(minutes=30),
            )
        )


def _jobs(s: Session, now: datetime, supplier_id: int, other_supplier_id: int) -> None:
    def run(job: str, ago: timedelta, status: JobStatus = JobStatus.SUCCEEDED, **kw: Any) -> None:
        started = now - ago
        s.add(
            JobRun(
                job=job,
                status=status,
                started_at=started,
                finished_at=started + timedelta(seconds=kw.pop("took", 4)),
                **kw,
            )
        )

    for minutes in (62, 52, 42):
        run("payouts-auto-release", timedelta(minutes=minutes), scanned=14, acted=3)
    run(
        "payouts-auto-release",
        timedelta(minutes=32),
        JobStatus.FAILED,
        scanned=12,
        acted=0,
        errors=2,
        last_error="Stripe transfer failed: api_error (500) for PO-0003; "
        "rate_limit (429) for PO-0005",
    )
    for minutes in (9, 4):
        run("payouts-resume", timedelta(minutes=minutes), scanned=0, acted=0)
    run(
        "invoices-retry-stuck",
        timedelta(minutes=11),
        scanned=4,
        acted=1,
        errors=1,
        last_error="INV-DEMO-0001: provider 503 Service Unavailable",
    )
    run("coupons-expire-reservations", timedelta(hours=3), scanned=2, acted=2)
    run("reconcile", timedelta(hours=7), scanned=3412, acted=5, took=41)
    # Runbook 001: the last hourly sync failed at page 3 of 4 of Roastery's catalogue;
    # the one before it was fine. The job run and the sync run tell the same story.
    error = "HTTP 502 from the supplier API on page 3 of 4 (products 101-150)"
    for ago in (timedelta(hours=2, minutes=35), timedelta(hours=1, minutes=35)):
        run("supplier-sync", ago, scanned=3, acted=2)
        for sid in (supplier_id, other_supplier_id):
            s.add(
                SupplierSyncRun(
                    supplier_id=sid,
                    status=SyncStatus.SUCCEEDED,
                    started_at=now - ago,
                    finished_at=now - ago + timedelta(seconds=20),
                    pages_done=4,
                    pages_total=4,
                    items_synced=180,
                    started_by="system:supplier-sync",
                )
            )
    run(
        "supplier-sync",
        timedelta(minutes=35),
        JobStatus.FAILED,
        scanned=3,
        acted=1,
        errors=1,
        last_error=f"Roastery Supplies GmbH: {error}",
    )
    s.add(
        SupplierSyncRun(
            supplier_id=other_supplier_id,
            status=SyncStatus.SUCCEEDED,
            started_at=now - timedelta(minutes=35),
            finished_at=now - timedelta(minutes=35) + timedelta(seconds=18),
            pages_done=4,
            pages_total=4,
            items_synced=180,
            started_by="system:supplier-sync",
        )
    )
    s.add(
        SupplierSyncRun(
            supplier_id=supplier_id,
            status=SyncStatus.FAILED,
            started_at=now - timedelta(minutes=35),
            finished_at=now - timedelta(minutes=34),
            start_page=1,
            pages_done=2,
            pages_total=4,
            failed_page=3,
            retryable=True,
            items_synced=100,
            error=error,
            started_by="system:supplier-sync",
        )
    )
