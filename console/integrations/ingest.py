"""Idempotent upserts of the shop's records, one savepoint per record.

Every kind is declared once (`Kind`): its schema, how to find a record by the
shop's id, how to apply a validated record to our row and how to read the row
back in the API's shape. `upsert_records` runs a list of raw records (one, or
a batch of up to 500) and reports a result per record:

- `created` / `updated`: written, with an audit entry attributed to the key;
- `unchanged`: nothing but possibly the shop's version moved forward;
- `stale`: the shop's `updated_at` (or `version`) is older than the one held,
  or the same version with other content: never applied over newer data;
- `invalid`: field errors; nothing of that record was written.

One bad record never blocks or half-writes another: each runs in its own
savepoint, refused ones leave one `failed` audit entry for the request.
Statuses only move forward (the rule of `orders/services.py`): a record
that the console already fixed (confirmed, refunded, transmitted) is never
taken back by an older view of the shop; the result says so in `warnings`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from console.actions.framework import loader
from console.audit.service import record as audit
from console.coupons.models import Coupon, CouponReservation, CouponReservationStatus
from console.integrations import schemas as sch
from console.integrations.keys import api_actor
from console.integrations.models import ApiKey
from console.inventory.models import (
    InventoryItem,
    InventoryLedgerEntry,
    InventoryReservation,
    LedgerReason,
    ReservationStatus,
)
from console.invoices.models import Invoice, InvoiceStatus, InvoiceTransmission
from console.orders.models import Order, OrderLine, OrderStatus
from console.payouts.models import DisputeStatus, PayoutStatus, Seller, SellerPayout
from console.suppliers.models import Supplier, SupplierSyncRun, SyncStatus

VERSION_KEYS = ("updated_at", "version")


class Invalid(Exception):
    """A record that validated but cannot be applied (a missing reference, a frozen field)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.errors = [sch.FieldError(field=field, message=message)]


def ts(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def field_errors(exc: ValidationError) -> list[sch.FieldError]:
    out = []
    for err in exc.errors(include_url=False, include_input=False)[:50]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(record)"
        out.append(sch.FieldError(field=loc, message=str(err.get("msg", "invalid"))[:300]))
    return out


def unstorable(value: Any, path: str = "", depth: int = 0) -> str | None:
    """The path of a string PostgreSQL cannot store (NUL, lone surrogates), if any."""
    if depth > 32:
        return path or "(record)"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "(record)"
        return (path or "(record)") if "\x00" in value else None
    if isinstance(value, dict):
        for k, v in value.items():
            found = unstorable(k, path, depth + 1) or unstorable(
                v, f"{path}.{k}" if path else str(k), depth + 1
            )
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = unstorable(v, f"{path}.{i}" if path else str(i), depth + 1)
            if found:
                return found
    return None


def forward_only(
    held: str, incoming: str, ranks: dict[str, int], warnings: list[str], what: str = "status"
) -> str:
    """Keep `held` when `incoming` would move the record backwards."""
    if held == incoming or ranks.get(incoming, 0) >= ranks.get(held, 0):
        return incoming
    warnings.append(
        f"{what} '{incoming}' not applied: the console holds '{held}', which is further along "
        "(statuses only move forward; apply the console's event first)"
    )
    return held


def _order_by_external(s: Session, external_id: str | None, field: str) -> Order | None:
    if external_id is None:
        return None
    order = s.scalar(select(Order).where(Order.external_id == external_id))
    if order is None:
        raise Invalid(field, f"no order {external_id}: send the order first")
    return order


def _order_external(s: Session, order_id: int | None, cache: dict[int, str] | None = None) -> Any:
    if order_id is None:
        return None
    return s.scalar(select(Order.external_id).where(Order.id == order_id))


# ------------------------------------------------------------------ orders

ORDER_RANK = {
    "pending": 0,
    "paid": 1,
    "confirmed": 2,
    "processing": 3,
    "fulfilled": 4,
    "delivered": 5,
    "completed": 6,
    "cancelled": 9,
    "refunded": 9,
}


load_order = loader(Order, Order.external_id, selectinload(Order.lines), nowait=False)


def order_out(o: Order) -> dict[str, Any]:
    s = _session(o)
    supplier = s.get(Supplier, o.supplier_id) if o.supplier_id else None
    return {
        "id": o.external_id,
        "updated_at": ts(o.shop_updated_at or o.updated_at),
        "version": o.shop_version,
        "status": o.status.value,
        "customer_email": o.customer_email,
        "amount": o.amount,
        "currency": o.currency,
        "amount_refunded": o.amount_refunded,
        "payment_intent_id": o.payment_intent_id,
        "checkout_session_id": o.checkout_session_id,
        "listing_id": o.listing_id,
        "seller_email": o.seller_email,
        "supplier": supplier.name if supplier else None,
        "supplier_forwarded_at": ts(o.supplier_forwarded_at),
        "supplier_order_ref": o.supplier_order_ref,
        "paid_at": ts(o.paid_at),
        "confirmed_at": ts(o.confirmed_at),
        "completed_at": ts(o.completed_at),
        "created_at": ts(o.created_at),
        "lines": [
            {"sku": line.sku, "quantity": line.quantity, "unit_amount": line.unit_amount}
            for line in o.lines
        ],
    }


def _supplier(s: Session, name: str) -> Supplier:
    supplier = s.scalar(select(Supplier).where(Supplier.name == name))
    if supplier is None:
        supplier = Supplier(name=name)
        s.add(supplier)
        s.flush()
    return supplier


def apply_order(s: Session, o: Order | None, r: Any, warnings: list[str]) -> Order:
    rec: sch.OrderIn = r
    if o is None:
        o = Order(external_id=rec.id, status=OrderStatus(rec.status), amount_refunded=0)
        s.add(o)
        if rec.created_at:
            o.created_at = rec.created_at
        o.lines = []
    else:
        o.status = OrderStatus(forward_only(o.status.value, rec.status, ORDER_RANK, warnings))
    if o.amount != rec.amount and o.amount_refunded > rec.amount:
        raise Invalid("amount", "smaller than what was already refunded")
    o.customer_email = rec.customer_email.lower()
    o.amount = rec.amount
    o.currency = rec.currency
    o.payment_intent_id = rec.payment_intent_id
    o.checkout_session_id = rec.checkout_session_id
    o.listing_id = rec.listing_id
    o.seller_email = rec.seller_email.lower() if rec.seller_email else None
    o.supplier_id = _supplier(s, rec.supplier).id if rec.supplier else None
    if rec.supplier_forwarded_at is not None or o.supplier_forwarded_at is None:
        # Once forwarded (here or at the shop) an order stays forwarded.
        o.supplier_forwarded_at = rec.supplier_forwarded_at or o.supplier_forwarded_at
    o.supplier_order_ref = rec.supplier_order_ref or o.supplier_order_ref
    o.paid_at = rec.paid_at or o.paid_at
    wanted = [(line.sku, line.quantity, line.unit_amount) for line in rec.lines]
    held = [(line.sku, line.quantity, line.unit_amount) for line in o.lines]
    if wanted != held:
        o.lines = [OrderLine(sku=a, quantity=b, unit_amount=c) for a, b, c in wanted]
    return o


# ------------------------------------------------------------------ inventory

RESERVATION_RANK = {"reserved": 0, "confirmed": 1, "released": 2, "expired": 2}


load_reservation = loader(InventoryReservation, InventoryReservation.external_id, nowait=False)


def reservation_out(r: InventoryReservation) -> dict[str, Any]:
    return {
        "id": r.external_id,
        "updated_at": ts(r.shop_updated_at or r.confirmed_at or r.created_at),
        "version": r.shop_version,
        "order_id": _order_external(_session(r), r.order_id),
        "sku": r.sku,
        "quantity": r.quantity,
        "status": r.status.value,
        "expires_at": ts(r.expires_at),
        "confirmed_at": ts(r.confirmed_at),
        "created_at": ts(r.created_at),
    }


def _require_item(s: Session, sku: str) -> None:
    if s.scalar(select(InventoryItem.id).where(InventoryItem.sku == sku)) is None:
        raise Invalid("sku", f"no inventory item {sku}: send the item first")


def apply_reservation(
    s: Session, r: InventoryReservation | None, rec_: Any, warnings: list[str]
) -> InventoryReservation:
    rec: sch.ReservationIn = rec_
    _require_item(s, rec.sku)
    order = _order_by_external(s, rec.order_id, "order_id")
    if r is None:
        r = InventoryReservation(external_id=rec.id, status=ReservationStatus(rec.status))
        s.add(r)
        if rec.created_at:
            r.created_at = rec.created_at
    else:
        status = forward_only(r.status.value, rec.status, RESERVATION_RANK, warnings)
        r.status = ReservationStatus(status)
    r.order_id = order.id if order else None
    r.sku = rec.sku
    r.quantity = rec.quantity
    r.expires_at = rec.expires_at
    r.confirmed_at = rec.confirmed_at or r.confirmed_at
    return r


load_item = loader(InventoryItem, InventoryItem.sku, nowait=False)


def item_out(i: InventoryItem) -> dict[str, Any]:
    return {
        "id": i.sku,
        "updated_at": ts(i.shop_updated_at or i.updated_at),
        "version": i.shop_version,
        "name": i.name,
        "stock_count": i.stock_count,
    }


def apply_item(
    s: Session, i: InventoryItem | None, rec_: Any, warnings: list[str]
) -> InventoryItem:
    rec: sch.InventoryItemIn = rec_
    if i is None:
        i = InventoryItem(sku=rec.id)
        s.add(i)
    i.name = rec.name
    i.stock_count = rec.stock_count
    return i


load_movement = loader(InventoryLedgerEntry, InventoryLedgerEntry.external_id, nowait=False)


def movement_out(m: InventoryLedgerEntry) -> dict[str, Any]:
    return {
        "id": m.external_id,
        "updated_at": ts(m.created_at),
        "version": None,
        "sku": m.sku,
        "quantity_change": m.quantity_change,
        "reason": m.reason.value,
        "reference_id": m.reference_id,
        "created_at": ts(m.created_at),
    }


def apply_movement(
    s: Session, m: InventoryLedgerEntry | None, rec_: Any, warnings: list[str]
) -> InventoryLedgerEntry:
    rec: sch.MovementIn = rec_
    if m is not None:
        same = (m.sku, m.quantity_change, m.reason.value, m.reference_id) == (
            rec.sku,
            rec.quantity_change,
            rec.reason,
            rec.reference_id,
        )
        if not same:
            raise Invalid("id", "a ledger movement never changes: post a new movement instead")
        return m
    _require_item(s, rec.sku)
    m = InventoryLedgerEntry(
        external_id=rec.id,
        sku=rec.sku,
        quantity_change=rec.quantity_change,
        reason=LedgerReason(rec.reason),
        reference_id=rec.reference_id,
        created_at=rec.created_at or rec.updated_at,
    )
    s.add(m)
    return m


# ------------------------------------------------------------------ invoices

INVOICE_RANK = {"draft": 0, "generated": 1, "failed": 1, "transmitted": 2, "void": 2}


load_invoice = loader(
    Invoice, Invoice.external_id, selectinload(Invoice.transmissions), nowait=False
)


def invoice_out(i: Invoice) -> dict[str, Any]:
    return {
        "id": i.external_id,
        "updated_at": ts(i.shop_updated_at or i.updated_at),
        "version": i.shop_version,
        "order_id": _order_external(_session(i), i.order_id),
        "amount": i.amount,
        "currency": i.currency,
        "status": i.status.value,
        "attempts": i.attempts,
        "next_attempt_at": ts(i.next_attempt_at),
        "last_error": i.last_error,
        "external_ref": i.external_ref,
        "transmissions": [
            {
                "id": t.external_id or f"console-{t.id}",
                "attempt": t.attempt,
                "started_at": ts(t.started_at),
                "finished_at": ts(t.finished_at),
                "response_status": t.response_status,
                "succeeded": t.succeeded,
                "request_summary": t.request_summary,
                "error_payload": t.error_payload,
            }
            for t in i.transmissions
        ],
    }


def apply_invoice(s: Session, i: Invoice | None, rec_: Any, warnings: list[str]) -> Invoice:
    rec: sch.InvoiceIn = rec_
    order = _order_by_external(s, rec.order_id, "order_id")
    if i is None:
        i = Invoice(external_id=rec.id, status=InvoiceStatus(rec.status))
        s.add(i)
    else:
        i.status = InvoiceStatus(forward_only(i.status.value, rec.status, INVOICE_RANK, warnings))
    i.order_id = order.id if order else None
    i.amount = rec.amount
    i.currency = rec.currency
    i.attempts = max(rec.attempts, i.attempts or 0)
    i.next_attempt_at = rec.next_attempt_at if i.status.value in ("draft", "generated") else None
    i.last_error = rec.last_error
    i.external_ref = rec.external_ref or i.external_ref
    s.flush()
    held = {t.external_id: t for t in i.transmissions if t.external_id}
    for n, t in enumerate(rec.transmissions):
        row = held.get(t.id)
        if row is None:
            other = s.scalar(
                select(InvoiceTransmission.invoice_id).where(
                    InvoiceTransmission.external_id == t.id
                )
            )
            if other is not None:
                raise Invalid(f"transmissions.{n}.id", f"{t.id} belongs to another invoice")
            row = InvoiceTransmission(invoice_id=i.id, external_id=t.id, attempt=t.attempt)
            s.add(row)
            i.transmissions.append(row)
        row.attempt = t.attempt
        row.started_at = t.started_at
        row.finished_at = t.finished_at
        row.response_status = t.response_status
        row.succeeded = t.succeeded
        row.request_summary = t.request_summary
        row.error_payload = t.error_payload
    return i


# ------------------------------------------------------------------ payouts

FROZEN_PAYOUT = (PayoutStatus.APPROVED, PayoutStatus.RELEASED)


load_payout = loader(
    SellerPayout, SellerPayout.external_id, selectinload(SellerPayout.seller), nowait=False
)


def payout_out(p: SellerPayout) -> dict[str, Any]:
    return {
        "id": p.external_id,
        "updated_at": ts(p.shop_updated_at or p.updated_at),
        "version": p.shop_version,
        "order_id": _order_external(_session(p), p.order_id),
        "seller": {
            "email": p.seller.email,
            "name": p.seller.name,
            "connected_account": p.destination_account,
        },
        "amount": p.amount,
        "currency": p.currency,
        "protected": p.protected,
        "protection_ends_at": ts(p.protection_ends_at),
        "delivery_confirmed_at": ts(p.delivery_confirmed_at),
        "dispute_status": p.dispute_status.value,
        "dispute_opened_at": ts(p.dispute_opened_at),
        "status": p.status.value,
        "admin_hold": p.admin_hold,
        "stripe_transfer_id": p.stripe_transfer_id,
        "released_at": ts(p.released_at),
    }


def apply_payout(
    s: Session, p: SellerPayout | None, rec_: Any, warnings: list[str]
) -> SellerPayout:
    rec: sch.PayoutIn = rec_
    order = _order_by_external(s, rec.order_id, "order_id")
    assert order is not None
    account = rec.seller.connected_account
    if p is not None and p.status in FROZEN_PAYOUT:
        moved = (p.amount, p.currency, p.destination_account) != (
            rec.amount,
            rec.currency,
            account,
        )
        if moved:
            raise Invalid(
                "amount",
                f"the payout is {p.status.value}: its amount, currency and account cannot change",
            )
    seller = s.scalar(select(Seller).where(Seller.email == rec.seller.email.lower()))
    if seller is None:
        seller = Seller(
            email=rec.seller.email.lower(), name=rec.seller.name, stripe_account_id=account
        )
        s.add(seller)
        s.flush()
    else:
        seller.name = rec.seller.name or seller.name
        seller.stripe_account_id = account
    if p is None:
        p = SellerPayout(external_id=rec.id, status=PayoutStatus.HELD)
        s.add(p)
    p.order_id = order.id
    p.seller_id = seller.id
    p.seller = seller
    p.amount = rec.amount
    p.currency = rec.currency
    p.destination_account = account
    p.protected = rec.protected
    p.protection_ends_at = rec.protection_ends_at
    p.delivery_confirmed_at = rec.delivery_confirmed_at
    p.dispute_status = DisputeStatus(rec.dispute_status)
    p.dispute_opened_at = rec.dispute_opened_at
    return p


# ------------------------------------------------------------------ coupons

COUPON_RES_RANK = {"reserved": 0, "redeemed": 1, "expired": 1, "released": 1}


load_coupon = loader(Coupon, Coupon.code, nowait=False)


def coupon_out(c: Coupon) -> dict[str, Any]:
    return {
        "id": c.code,
        "updated_at": ts(c.shop_updated_at or c.created_at),
        "version": c.shop_version,
        "max_redemptions": c.max_redemptions,
        "redeemed_count": c.redeemed_count,
        "reserved_count": c.reserved_count,
    }


def apply_coupon(s: Session, c: Coupon | None, rec_: Any, warnings: list[str]) -> Coupon:
    rec: sch.CouponIn = rec_
    if c is None:
        c = Coupon(code=rec.id)
        s.add(c)
    c.max_redemptions = rec.max_redemptions
    c.redeemed_count = rec.redeemed_count
    c.reserved_count = rec.reserved_count
    return c


load_coupon_reservation = loader(CouponReservation, CouponReservation.external_id, nowait=False)


def coupon_reservation_out(r: CouponReservation) -> dict[str, Any]:
    s = _session(r)
    return {
        "id": r.external_id,
        "updated_at": ts(r.shop_updated_at or r.created_at),
        "version": r.shop_version,
        "coupon": s.scalar(select(Coupon.code).where(Coupon.id == r.coupon_id)),
        "order_id": _order_external(s, r.order_id),
        "status": r.status.value,
        "expires_at": ts(r.expires_at),
        "created_at": ts(r.created_at),
    }


def apply_coupon_reservation(
    s: Session, r: CouponReservation | None, rec_: Any, warnings: list[str]
) -> CouponReservation:
    rec: sch.CouponReservationIn = rec_
    coupon = s.scalar(select(Coupon).where(Coupon.code == rec.coupon))
    if coupon is None:
        raise Invalid("coupon", f"no coupon {rec.coupon}: send the coupon first")
    order = _order_by_external(s, rec.order_id, "order_id")
    if r is None:
        r = CouponReservation(external_id=rec.id, status=CouponReservationStatus(rec.status))
        s.add(r)
        if rec.created_at:
            r.created_at = rec.created_at
    else:
        status = forward_only(r.status.value, rec.status, COUPON_RES_RANK, warnings)
        r.status = CouponReservationStatus(status)
    r.coupon_id = coupon.id
    r.order_id = order.id if order else None
    r.expires_at = rec.expires_at
    return r


# ------------------------------------------------------------------ supplier syncs

SYNC_RANK = {"running": 0, "succeeded": 1, "failed": 1}


load_sync = loader(SupplierSyncRun, SupplierSyncRun.external_id, nowait=False)


def sync_out(r: SupplierSyncRun) -> dict[str, Any]:
    s = _session(r)
    return {
        "id": r.external_id,
        "updated_at": ts(r.shop_updated_at or r.finished_at or r.started_at),
        "version": r.shop_version,
        "supplier": s.scalar(select(Supplier.name).where(Supplier.id == r.supplier_id)),
        "status": r.status.value,
        "started_at": ts(r.started_at),
        "finished_at": ts(r.finished_at),
        "items_synced": r.items_synced,
        "error": r.error,
    }


def apply_sync(
    s: Session, r: SupplierSyncRun | None, rec_: Any, warnings: list[str]
) -> SupplierSyncRun:
    rec: sch.SupplierSyncIn = rec_
    supplier = _supplier(s, rec.supplier)
    if r is None:
        r = SupplierSyncRun(external_id=rec.id, status=SyncStatus(rec.status))
        s.add(r)
    else:
        r.status = SyncStatus(forward_only(r.status.value, rec.status, SYNC_RANK, warnings))
    r.supplier_id = supplier.id
    r.started_at = rec.started_at
    r.finished_at = rec.finished_at
    r.items_synced = rec.items_synced
    r.error = rec.error
    return r


# ------------------------------------------------------------------ the kinds


def _session(obj: Any) -> Session:
    from sqlalchemy.orm import object_session

    s = object_session(obj)
    if s is None:
        raise RuntimeError("detached record")
    return s


@dataclass(frozen=True)
class Kind:
    """One record kind of the API: its path, scope, schema and how it maps to our rows."""

    path: str
    record: str
    """The target type in the audit log and the record kind of events."""
    scope: str
    title: str
    schema: type[sch.Record]
    out_schema: type[sch.Record]
    load: Callable[[Session, str, bool], Any]
    apply: Callable[[Session, Any, Any, list[str]], Any]
    out: Callable[[Any], dict[str, Any]]
    versioned: bool = True


KINDS: dict[str, Kind] = {
    k.path: k
    for k in (
        Kind("orders", "order", "orders", "Orders", sch.OrderIn, sch.OrderOut,
             load_order, apply_order, order_out),
        Kind("inventory-reservations", "reservation", "reservations", "Inventory reservations",
             sch.ReservationIn, sch.ReservationOut, load_reservation, apply_reservation,
             reservation_out),
        Kind("invoices", "invoice", "invoices", "Invoices", sch.InvoiceIn, sch.InvoiceOut,
             load_invoice, apply_invoice, invoice_out),
        Kind("payouts", "payout", "payouts", "Seller payouts", sch.PayoutIn, sch.PayoutOut,
             load_payout, apply_payout, payout_out),
        Kind("inventory-items", "inventory_item", "inventory", "Inventory items",
             sch.InventoryItemIn, sch.InventoryItemOut, load_item, apply_item, item_out),
        Kind("inventory-movements", "inventory_movement", "inventory", "Ledger movements",
             sch.MovementIn, sch.MovementOut, load_movement, apply_movement, movement_out,
             versioned=False),
        Kind("coupons", "coupon", "coupons", "Coupons", sch.CouponIn, sch.CouponOut,
             load_coupon, apply_coupon, coupon_out),
        Kind("coupon-reservations", "coupon_reservation", "coupons", "Coupon reservations",
             sch.CouponReservationIn, sch.CouponReservationOut, load_coupon_reservation,
             apply_coupon_reservation, coupon_reservation_out),
        Kind("supplier-sync-runs", "supplier_sync", "supplier_syncs", "Supplier sync runs",
             sch.SupplierSyncIn, sch.SupplierSyncOut, load_sync, apply_sync, sync_out),
    )
}  # fmt: skip
KIND_BY_RECORD = {k.record: k for k in KINDS.values()}


def is_stale(obj: Any, rec: sch.Record) -> bool:
    """Older than held: by version when both sides have one, else by `updated_at`."""
    held_version = getattr(obj, "shop_version", None)
    if held_version is not None and rec.version is not None:
        return bool(rec.version < held_version)
    held_at = getattr(obj, "shop_updated_at", None)
    return bool(held_at is not None and rec.updated_at < held_at)


def same_version(obj: Any, rec: sch.Record) -> bool:
    held_version = getattr(obj, "shop_version", None)
    if held_version is not None and rec.version is not None:
        return bool(rec.version == held_version)
    return bool(getattr(obj, "shop_updated_at", None) == rec.updated_at)


def _content(state: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (state or {}).items() if k not in VERSION_KEYS}


def upsert_one(s: Session, kind: Kind, raw: Any, index: int, key: ApiKey) -> sch.RecordResult:
    """Validate and apply one record in its own savepoint; never raises for bad input."""
    claimed = raw.get("id") if isinstance(raw, dict) else None
    claimed_id = claimed if isinstance(claimed, str) and len(claimed) <= 64 else None
    where = unstorable(raw)
    if where is not None:
        return sch.RecordResult(
            index=index,
            id=None,
            result="invalid",
            errors=[sch.FieldError(field=where, message="text with NUL or invalid Unicode")],
        )
    try:
        rec = kind.schema.model_validate(raw)
    except ValidationError as exc:
        return sch.RecordResult(
            index=index, id=claimed_id, result="invalid", errors=field_errors(exc)
        )
    for attempt in (1, 2):
        nested = s.begin_nested()
        try:
            result = _apply(s, kind, rec, index, key)
            if result.result in ("stale", "invalid"):
                nested.rollback()
            else:
                nested.commit()
            return result
        except Invalid as exc:
            nested.rollback()
            return sch.RecordResult(index=index, id=rec.id, result="invalid", errors=exc.errors)
        except IntegrityError as exc:
            nested.rollback()
            if attempt == 1:
                continue  # created concurrently by another request: now it is an update
            return sch.RecordResult(
                index=index,
                id=rec.id,
                result="invalid",
                errors=[sch.FieldError(field="(record)", message=_integrity(exc))],
            )
    raise AssertionError("unreachable")


def _integrity(exc: IntegrityError) -> str:
    diag = getattr(exc.orig, "diag", None)
    detail = getattr(diag, "message_primary", None) or "unique or reference violation"
    return f"conflicts with another record: {detail}"


def _apply(s: Session, kind: Kind, rec: sch.Record, index: int, key: ApiKey) -> sch.RecordResult:
    obj = kind.load(s, rec.id, True)
    before = kind.out(obj) if obj is not None else None
    if obj is not None and kind.versioned and is_stale(obj, rec):
        return sch.RecordResult(
            index=index,
            id=rec.id,
            result="stale",
            held_updated_at=obj.shop_updated_at,
            held_version=obj.shop_version,
            warnings=["the console holds a newer version of this record; nothing applied"],
        )
    warnings: list[str] = []
    obj = kind.apply(s, obj, rec, warnings)
    s.flush()
    after = kind.out(obj)
    changed = _content(before) != _content(after)
    if before is not None and kind.versioned and same_version(obj, rec) and changed:
        return sch.RecordResult(
            index=index,
            id=rec.id,
            result="stale",
            held_updated_at=obj.shop_updated_at,
            held_version=obj.shop_version,
            warnings=["same version as held but different content: send a newer updated_at"],
        )
    if kind.versioned:
        obj.shop_updated_at = rec.updated_at
        if rec.version is not None:
            obj.shop_version = rec.version
        s.flush()
    if before is not None and not changed:
        return sch.RecordResult(index=index, id=rec.id, result="unchanged", warnings=warnings)
    result: sch.ResultKind = "created" if before is None else "updated"
    audit(
        s,
        action=f"api:{kind.record}:upsert",
        outcome="success",
        actor=api_actor(key),
        target_type=kind.record,
        target_id=rec.id,
        reason=f"{result} through the ingest API by key {key.name} ({key.shop})",
        before=before,
        after=after,
        details={"api_key": key.prefix, "key_name": key.name, "shop": key.shop, "result": result,
                 "warnings": warnings},
    )  # fmt: skip
    return sch.RecordResult(index=index, id=rec.id, result=result, warnings=warnings)


def upsert_records(s: Session, kind: Kind, raws: list[Any], key: ApiKey) -> list[sch.RecordResult]:
    """Upsert each record; audit what was refused; one commit for the request."""
    results = [upsert_one(s, kind, raw, i, key) for i, raw in enumerate(raws)]
    refused = [r for r in results if r.result in ("stale", "invalid")]
    if refused:
        audit(
            s,
            action=f"api:{kind.record}:upsert",
            outcome="failed",
            actor=api_actor(key),
            target_type=kind.record,
            target_id=refused[0].id if len(refused) == 1 else None,
            reason=f"{len(refused)} of {len(results)} record(s) refused",
            details={
                "api_key": key.prefix,
                "key_name": key.name,
                "shop": key.shop,
                "refused": [
                    {
                        "index": r.index,
                        "id": r.id,
                        "result": r.result,
                        "errors": [e.model_dump() for e in r.errors[:5]],
                    }
                    for r in refused[:100]
                ],
            },
        )
    s.commit()
    return results


def counts(results: list[sch.RecordResult]) -> dict[str, int]:
    out = dict.fromkeys(("created", "updated", "unchanged", "stale", "invalid"), 0)
    for r in results:
        out[r.result] += 1
    return out
