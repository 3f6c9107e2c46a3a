"""The transactional outbox: an event per change to a record the shop owns.

`emit` writes the event, and one delivery per subscribed endpoint, in the
caller's transaction: the event commits with the change or not at all. The
payload carries the record's new state (in the ingest API's shape), a
per-record sequence number (1, 2, 3... so the shop ignores an older event
than one it applied), who did it, why, and the audit entry's sequence number.

Declared actions get this with one line: `event="order.refunded"` on the
`Action` (the framework calls `emit` after the audit entry). Services that
change shop records outside an action (auto-release, resume) call `emit`
themselves, after their own audit entry.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from console.audit.chain import format_ts
from console.integrations.models import (
    DeliveryStatus,
    EventDelivery,
    OutboxEvent,
    RecordSequence,
    WebhookEndpoint,
)

# Every event type and the kind of record it is about. A new one is one line here.
EVENT_TYPES: dict[str, str] = {
    "order.marked_paid": "order",
    "order.refunded": "order",
    "order.cancelled": "order",
    "order.reservation_confirmed": "order",
    "order.forwarded_to_supplier": "order",
    "order.completed": "order",
    "order.created": "order",
    "order.payment_attached": "order",
    "order.stripe_event_replayed": "order",
    "order.stripe_event_applied": "order",
    "invoice.transmitted": "invoice",
    "invoice.voided": "invoice",
    "payout.held": "payout",
    "payout.hold_lifted": "payout",
    "payout.released": "payout",
    # Declared for the inventory and coupon queues (their actions add `event=`):
    "inventory.correction_posted": "inventory_item",
    "coupon.reservations_released": "coupon",
}


class UnknownEventType(ValueError):
    pass


def record_ref(record: Any) -> tuple[str, str, dict[str, Any]]:
    """(kind, shop id, state) of a model row, in the ingest API's shape."""
    from console.integrations.ingest import KINDS

    for kind in KINDS.values():
        model = _model_of(kind.path)
        if model is not None and isinstance(record, model):
            state = kind.out(record)
            return kind.record, str(state["id"]), state
    raise TypeError(f"no record kind for {type(record).__name__}")


def _model_of(path: str) -> Any:
    from console.coupons.models import Coupon, CouponReservation
    from console.inventory.models import InventoryItem, InventoryLedgerEntry, InventoryReservation
    from console.invoices.models import Invoice
    from console.orders.models import Order
    from console.payouts.models import SellerPayout
    from console.suppliers.models import SupplierSyncRun

    return {
        "orders": Order,
        "inventory-reservations": InventoryReservation,
        "invoices": Invoice,
        "payouts": SellerPayout,
        "inventory-items": InventoryItem,
        "inventory-movements": InventoryLedgerEntry,
        "coupons": Coupon,
        "coupon-reservations": CouponReservation,
        "supplier-sync-runs": SupplierSyncRun,
    }.get(path)


def next_record_seq(s: Session, kind: str, record_id: str) -> int:
    """Atomically take the record's next event number (one row per record, upserted)."""
    stmt = (
        insert(RecordSequence)
        .values(record_kind=kind, record_id=record_id, seq=1)
        .on_conflict_do_update(
            index_elements=[RecordSequence.record_kind, RecordSequence.record_id],
            set_={"seq": RecordSequence.seq + 1},
        )
        .returning(RecordSequence.seq)
    )
    return int(s.execute(stmt).scalar_one())


def emit(
    s: Session,
    type_: str,
    record: Any,
    *,
    actor: Mapping[str, Any] | None,
    reason: str | None,
    audit_seq: int | None,
    extra: Mapping[str, Any] | None = None,
) -> OutboxEvent:
    """Write an event about `record` (and its deliveries) in the caller's transaction."""
    if type_ not in EVENT_TYPES:
        raise UnknownEventType(f"{type_} is not declared in EVENT_TYPES")
    s.flush()
    kind, record_id, state = record_ref(record)
    if EVENT_TYPES[type_] != kind:
        raise UnknownEventType(f"{type_} is about a {EVENT_TYPES[type_]}, not a {kind}")
    event = OutboxEvent(
        event_id="evt_" + uuid.uuid4().hex,
        type=type_,
        record_kind=kind,
        record_id=record_id,
        record_seq=next_record_seq(s, kind, record_id),
        data={"record": state, **(dict(extra) if extra else {})},
        actor={
            "sub": (actor or {}).get("sub"),
            "email": (actor or {}).get("email"),
            "roles": list((actor or {}).get("roles") or []),
        },
        reason=reason,
        audit_seq=audit_seq,
    )
    s.add(event)
    s.flush()
    endpoints = s.scalars(select(WebhookEndpoint).where(WebhookEndpoint.enabled.is_(True))).all()
    delivering = False
    for endpoint in endpoints:
        if endpoint.event_types and type_ not in endpoint.event_types:
            continue
        s.add(
            EventDelivery(
                event_pk=event.id,
                endpoint_id=endpoint.id,
                status=DeliveryStatus.PENDING,
                next_attempt_at=event.created_at,
            )
        )
        delivering = True
    s.flush()
    if delivering:
        deliver_soon(s)
    return event


def deliver_soon(s: Session) -> None:
    """Ask a worker to deliver now, in this transaction (one waiting job is enough)."""
    from console.jobs.engine import AlreadyQueued, enqueue
    from console.jobs.tasks import DELIVER_NOW

    # A delivery job already waiting will send this event too.
    with contextlib.suppress(AlreadyQueued):
        enqueue(s, DELIVER_NOW, queueing_lock=DELIVER_NOW)


def payload(event: OutboxEvent) -> dict[str, Any]:
    """The body the shop receives (the same bytes on every attempt)."""
    return {
        "id": event.event_id,
        "type": event.type,
        "timestamp": format_ts(event.created_at),
        "data": {
            "kind": event.record_kind,
            "id": event.record_id,
            "sequence": event.record_seq,
            "actor": event.actor,
            "reason": event.reason,
            "audit_seq": event.audit_seq,
            **event.data,
        },
    }


def emit_for_action(
    s: Session,
    type_or_choice: Any,
    records: list[Any],
    *,
    actor: Mapping[str, Any],
    reason: str,
    audit_seq: int,
) -> list[OutboxEvent]:
    """The framework's hook: events for a declared action's records."""
    events = []
    for record in records:
        type_ = type_or_choice(record) if callable(type_or_choice) else type_or_choice
        if type_:
            events.append(emit(s, type_, record, actor=actor, reason=reason, audit_seq=audit_seq))
    return events
