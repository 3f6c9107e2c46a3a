"""Reconciliation: compare what Stripe knows with what we know (runbooks 003, 004).

Stripe is read with list endpoints (100 per call, a `created` window,
paging with `starting_after`), never one retrieve per order; a run narrowed
to one PaymentIntent or one order id asks for those objects by name instead
(retrieve, Search API, the order's transfer group). The number of calls is
recorded on the run. A finding is keyed by a fingerprint (type and
object), so a later run updates it instead of duplicating it, and an
unfiltered run auto-closes open findings it no longer sees.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from console.db import utcnow
from console.orders.models import Order, OrderStatus
from console.payments.gateway import GatewayError, StripeGateway
from console.payments.models import WebhookEvent
from console.payouts.models import SellerPayout
from console.reconciliation.models import (
    FindingStatus,
    FindingType,
    ReconciliationFinding,
    ReconciliationRun,
    RunStatus,
    Severity,
)
from console.templating import money

SEVERITY = {
    FindingType.STRIPE_PAID_NO_ORDER: Severity.CRITICAL,
    FindingType.AMOUNT_MISMATCH: Severity.CRITICAL,
    FindingType.ORDER_PAID_NO_STRIPE: Severity.HIGH,
    FindingType.REFUND_NOT_REFLECTED: Severity.HIGH,
    FindingType.REFUND_MISSING_AT_STRIPE: Severity.HIGH,
    FindingType.TRANSFER_ORDER_NOT_COMPLETED: Severity.MEDIUM,
    FindingType.EVENT_NOT_RECEIVED: Severity.WARNING,
}
SUGGESTED = {
    FindingType.STRIPE_PAID_NO_ORDER: "create_order",
    FindingType.AMOUNT_MISMATCH: "refund",
    FindingType.ORDER_PAID_NO_STRIPE: "mark_cancelled",
    FindingType.REFUND_NOT_REFLECTED: "record_refund",
    FindingType.REFUND_MISSING_AT_STRIPE: "check_refund",
    FindingType.TRANSFER_ORDER_NOT_COMPLETED: "mark_completed",
    FindingType.EVENT_NOT_RECEIVED: "replay_event",
}
PAID_STATES = [
    OrderStatus.PAID,
    OrderStatus.CONFIRMED,
    OrderStatus.PROCESSING,
    OrderStatus.FULFILLED,
    OrderStatus.DELIVERED,
    OrderStatus.COMPLETED,
]
FILTER_KEYS = ("order_id", "listing_id", "email", "payment_intent", "since", "until")
DEFAULT_WINDOW = timedelta(days=30)
MARGIN = timedelta(days=1)


def when(ts: int | None) -> str:
    if not ts:
        return "an unknown time"
    dt = datetime.fromtimestamp(ts, UTC)
    return f"{dt.day} {dt:%b} at {dt:%H:%M} UTC"


@dataclass
class Seen:
    type: FindingType
    subject: str
    explanation: str
    order_id: int | None = None
    payment_intent_id: str | None = None
    transfer_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return f"{self.type.value}:{self.subject}"


def _with_retry(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call Stripe, retrying 429 with backoff (the same read is safe to repeat)."""
    for pause in (0.5, 1, 2, 4, 8, 0):
        try:
            return fn(*args, **kwargs)
        except GatewayError as exc:
            if exc.kind != "rate_limited" or not pause:
                raise
            time.sleep(pause)
    raise AssertionError("unreachable")


LEASE = timedelta(minutes=2)
"""A run whose worker has not beaten its heart for this long is dead."""
START_GRACE = timedelta(minutes=15)
"""A run no worker has picked up yet may wait this long in the queue."""
BEAT_EVERY_SECONDS = 10.0


class Heartbeat:
    """Refresh the run's `heartbeat_at` (its own short transaction, at most every 10 s)."""

    def __init__(self, s: Session, run_id: int) -> None:
        self.engine = s.get_bind().engine
        self.run_id = run_id
        self.last = 0.0

    def __call__(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < BEAT_EVERY_SECONDS:
            return
        with self.engine.begin() as conn:
            conn.execute(
                update(ReconciliationRun)
                .where(ReconciliationRun.id == self.run_id)
                .values(heartbeat_at=utcnow())
            )
        self.last = now


def is_alive(run: ReconciliationRun, now: datetime) -> bool:
    """Running, and its worker beat recently (or it is still waiting for one)."""
    if run.status != RunStatus.RUNNING:
        return False
    if run.heartbeat_at is not None:
        return now - run.heartbeat_at <= LEASE
    return now - run.started_at <= START_GRACE


def abandon(run: ReconciliationRun, now: datetime) -> None:
    """Close a dead run as failed, saying why (its filters can be run again)."""
    run.status = RunStatus.FAILED
    run.finished_at = now
    since = run.heartbeat_at or run.started_at
    run.error = (
        f"abandoned: no heartbeat from a worker since {since:%Y-%m-%d %H:%M:%S} UTC "
        "(the worker stopped, or no `jobs worker` is running)"
    )


def _list_all(
    gw: StripeGateway, method: str, beat: Heartbeat | None = None, **params: Any
) -> list[dict[str, Any]]:
    """Page through a list endpoint; a 429 on any page retries that page only."""
    items: list[dict[str, Any]] = []
    starting_after: str | None = None
    list_fn = gw.client.v1.payment_intents.list if method == "pi" else gw.client.v1.transfers.list
    while True:
        page_params = {"limit": 100, **params}
        if starting_after:
            page_params["starting_after"] = starting_after
        page = _with_retry(gw._call, list_fn, page_params)
        if beat is not None:
            beat()
        data = [obj.to_dict() for obj in page.data]
        items.extend(data)
        if not page.has_more or not data:
            return items
        starting_after = data[-1]["id"]


def _window(filters: dict[str, str]) -> tuple[datetime, datetime]:
    now = utcnow()
    since = _parse(filters.get("since")) or now - DEFAULT_WINDOW
    until = _parse(filters.get("until")) or now + timedelta(minutes=1)
    return since, until


def _parse(raw: str | None) -> datetime | None:
    if not raw:
        return None
    value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _local_orders(s: Session, filters: dict[str, str], since: datetime, until: datetime) -> Any:
    stmt = select(Order).where(Order.created_at >= since - MARGIN, Order.created_at < until)
    if filters.get("order_id"):
        stmt = stmt.where(Order.external_id == filters["order_id"])
    if filters.get("listing_id"):
        stmt = stmt.where(Order.listing_id == filters["listing_id"])
    if filters.get("email"):
        email = filters["email"].lower()
        stmt = stmt.where(or_(Order.customer_email == email, Order.seller_email == email))
    if filters.get("payment_intent"):
        stmt = stmt.where(Order.payment_intent_id == filters["payment_intent"])
    return stmt


TARGETED_ORDERS = 3
"""A run narrowed to at most this many orders asks Stripe for their objects, not lists."""


def _targeted(filters: dict[str, str], orders: list[Order]) -> bool:
    """Whether the filter names its objects: one PaymentIntent, or an order id.

    Listing the whole window to find one PaymentIntent costs ceil(N/100)
    calls however small the question (issue 15); a PaymentIntent id or an
    order id names what to retrieve. Email and listing filters can match any
    number of orders, so they keep the list calls.
    """
    if filters.get("email") or filters.get("listing_id"):
        return False
    if not (filters.get("payment_intent") or filters.get("order_id")):
        return False
    return len(orders) <= TARGETED_ORDERS


def _ask_for_the_objects(
    gw: StripeGateway, filters: dict[str, str], orders: list[Order]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The PaymentIntents and transfers of a targeted run, each asked for by name.

    One retrieve per PaymentIntent (the filter's, and those the orders
    reference), a Search API call for PaymentIntents that claim the order id
    in their metadata (Stripe paid, no order references it), and the
    transfers of each order's transfer group: <= 5 calls for one order.
    """
    wanted = {o.payment_intent_id for o in orders if o.payment_intent_id}
    if filters.get("payment_intent"):
        wanted.add(filters["payment_intent"])
    intents: dict[str, dict[str, Any]] = {}
    for pi_id in sorted(wanted):
        try:
            pi = _with_retry(gw.retrieve_payment_intent, pi_id)
        except GatewayError as exc:
            if exc.kind != "not_found":
                raise
            continue  # Stripe does not know it: the order side says so
        intents[pi["id"]] = pi
    if filters.get("order_id"):
        found = _with_retry(gw.search_payment_intents, {"order_id": filters["order_id"]})
        for pi in found:
            intents.setdefault(pi["id"], pi)
    transfers: list[dict[str, Any]] = []
    for order in orders:
        group = f"order-{order.id}"
        transfers.extend(_with_retry(lambda g=group: list(gw.list_transfers(transfer_group=g))))
    return list(intents.values()), transfers


def detect(
    s: Session,
    gw: StripeGateway,
    filters: dict[str, str],
    run: ReconciliationRun,
    beat: Heartbeat | None = None,
) -> list[Seen]:
    """Everything that differs, in words. Lists Stripe, or asks for named objects."""
    since, until = _window(filters)
    calls_before = gw.calls
    narrowed = any(filters.get(k) for k in ("order_id", "listing_id", "email", "payment_intent"))
    orders = list(s.scalars(_local_orders(s, filters, since, until)))
    run.scanned_local = len(orders)
    if _targeted(filters, orders):
        intents, transfers = _ask_for_the_objects(gw, filters, orders)
    else:
        created = {
            "gte": int((since - MARGIN).timestamp()),
            "lt": int((until + MARGIN).timestamp()),
        }
        intents = _list_all(gw, "pi", beat, created=created, expand=["data.latest_charge"])
        transfers = _list_all(gw, "transfers", beat, created=created)
    run.stripe_calls = gw.calls - calls_before
    run.scanned_stripe = len(intents) + len(transfers)
    by_intent = {o.payment_intent_id: o for o in orders if o.payment_intent_id}
    if not narrowed:
        # Orders outside the window may still reference intents inside it.
        ids = [pi["id"] for pi in intents if pi["id"] not in by_intent]
        for chunk in range(0, len(ids), 500):
            for o in s.scalars(
                select(Order).where(Order.payment_intent_id.in_(ids[chunk : chunk + 500]))
            ):
                by_intent[o.payment_intent_id or ""] = o
    intent_ids = {pi["id"] for pi in intents}
    events: set[str] = set()
    ids = sorted(intent_ids)
    for chunk in range(0, len(ids), 1000):
        events.update(
            e
            for e in s.scalars(
                select(WebhookEvent.object_id).where(
                    WebhookEvent.object_id.in_(ids[chunk : chunk + 1000])
                )
            )
            if e
        )
    found: list[Seen] = []
    for pi in intents:
        if narrowed and pi["id"] not in by_intent:
            meta = pi.get("metadata") or {}
            if not (
                filters.get("payment_intent") == pi["id"]
                or (filters.get("order_id") and meta.get("order_id") == filters["order_id"])
                or (filters.get("listing_id") and meta.get("listing_id") == filters["listing_id"])
            ):
                continue
        if pi.get("status") != "succeeded":
            continue
        received = int(pi.get("amount_received") or pi.get("amount") or 0)
        currency = str(pi.get("currency", "")).upper()
        order = by_intent.get(pi["id"])
        if order is None:
            found.append(
                Seen(
                    FindingType.STRIPE_PAID_NO_ORDER,
                    pi["id"],
                    f"Stripe shows {pi['id']} succeeded for {money(received, currency)} on "
                    f"{when(pi.get('created'))}; no order references it.",
                    payment_intent_id=pi["id"],
                    details={
                        "metadata": pi.get("metadata") or {},
                        "amount": received,
                        "currency": currency,
                    },
                )
            )
            continue
        if received != order.amount or currency != order.currency.upper():
            found.append(
                Seen(
                    FindingType.AMOUNT_MISMATCH,
                    pi["id"],
                    f"Stripe received {money(received, currency)} for {pi['id']}, but order "
                    f"{order.external_id} is {money(order.amount, order.currency)}.",
                    order_id=order.id,
                    payment_intent_id=pi["id"],
                )
            )
        charge = pi.get("latest_charge")
        refunded = int(charge.get("amount_refunded") or 0) if isinstance(charge, dict) else None
        if refunded is not None and refunded != order.amount_refunded:
            kind = (
                FindingType.REFUND_NOT_REFLECTED
                if refunded > order.amount_refunded
                else FindingType.REFUND_MISSING_AT_STRIPE
            )
            found.append(
                Seen(
                    kind,
                    pi["id"],
                    f"Stripe shows {money(refunded, currency)} refunded on {pi['id']}; order "
                    f"{order.external_id} records {money(order.amount_refunded, order.currency)}.",
                    order_id=order.id,
                    payment_intent_id=pi["id"],
                )
            )
        if order.status in (OrderStatus.PENDING, OrderStatus.PAID) and pi["id"] not in events:
            found.append(
                Seen(
                    FindingType.EVENT_NOT_RECEIVED,
                    pi["id"],
                    f"{pi['id']} succeeded at Stripe on {when(pi.get('created'))}, but no event "
                    f"for it reached us and order {order.external_id} is still "
                    f"{order.status.value}.",
                    order_id=order.id,
                    payment_intent_id=pi["id"],
                )
            )
    for order in orders:
        if (
            order.status in PAID_STATES
            and order.payment_intent_id
            and order.payment_intent_id not in intent_ids
            and order.created_at >= since
        ):
            found.append(
                Seen(
                    FindingType.ORDER_PAID_NO_STRIPE,
                    order.payment_intent_id,
                    f"Order {order.external_id} is {order.status.value} with "
                    f"{order.payment_intent_id}, which Stripe does not list.",
                    order_id=order.id,
                    payment_intent_id=order.payment_intent_id,
                )
            )
    order_ids = {o.id for o in orders} if narrowed else None
    for t in transfers:
        payout_ref = (t.get("metadata") or {}).get("payout_id")
        if not payout_ref:
            continue
        payout = s.scalar(select(SellerPayout).where(SellerPayout.external_id == payout_ref))
        if payout is None or (order_ids is not None and payout.order_id not in order_ids):
            continue
        order = s.get(Order, payout.order_id)
        if order is not None and order.status not in (
            OrderStatus.COMPLETED,
            OrderStatus.REFUNDED,
            OrderStatus.CANCELLED,
        ):
            found.append(
                Seen(
                    FindingType.TRANSFER_ORDER_NOT_COMPLETED,
                    t["id"],
                    f"Transfer {t['id']} ({money(int(t['amount']), str(t['currency']).upper())} "
                    f"to {t.get('destination')}) exists, but order {order.external_id} is "
                    f"still {order.status.value}, not completed.",
                    order_id=order.id,
                    payment_intent_id=order.payment_intent_id,
                    transfer_id=t["id"],
                )
            )
    return found


def record_findings(
    s: Session, run: ReconciliationRun, seen: list[Seen], *, auto_close: bool
) -> None:
    """Insert new findings, update those seen again, auto-close the rest (unfiltered runs)."""
    now = utcnow()
    fingerprints = set()
    for item in seen:
        fingerprints.add(item.fingerprint)
        existing = s.scalar(
            select(ReconciliationFinding).where(
                ReconciliationFinding.fingerprint == item.fingerprint
            )
        )
        if existing is None:
            nested = s.begin_nested()
            try:
                s.add(
                    ReconciliationFinding(
                        fingerprint=item.fingerprint,
                        type=item.type,
                        severity=SEVERITY[item.type],
                        status=FindingStatus.OPEN,
                        explanation=item.explanation,
                        suggested_action=SUGGESTED[item.type],
                        order_id=item.order_id,
                        payment_intent_id=item.payment_intent_id,
                        transfer_id=item.transfer_id,
                        details=item.details,
                        first_seen_run_id=run.id,
                        last_seen_run_id=run.id,
                        first_seen_at=now,
                        last_seen_at=now,
                    )
                )
                nested.commit()
                run.findings_new += 1
                continue
            except IntegrityError:  # a concurrent run inserted it first
                nested.rollback()
                existing = s.scalar(
                    select(ReconciliationFinding).where(
                        ReconciliationFinding.fingerprint == item.fingerprint
                    )
                )
        if existing is not None:
            existing.last_seen_run_id = run.id
            existing.last_seen_at = now
            existing.explanation = item.explanation
            if existing.status == FindingStatus.AUTO_CLOSED:
                existing.status = FindingStatus.OPEN  # it came back
                existing.closed_at = None
            run.findings_seen += 1
    if auto_close:
        for finding in s.scalars(
            select(ReconciliationFinding).where(ReconciliationFinding.status == FindingStatus.OPEN)
        ):
            if finding.fingerprint not in fingerprints:
                finding.status = FindingStatus.AUTO_CLOSED
                finding.closed_at = now
                finding.close_reason = f"not seen by run #{run.id}"
                run.findings_closed += 1


def run_reconciliation(
    s: Session, gw: StripeGateway, filters: dict[str, str], *, started_by: str | None
) -> ReconciliationRun:
    """Start, execute and finish one run (commits as it goes: the page polls it)."""
    clean = {k: v.strip() for k, v in filters.items() if k in FILTER_KEYS and v and v.strip()}
    run = ReconciliationRun(filters=clean, status=RunStatus.RUNNING, started_by_sub=started_by)
    s.add(run)
    s.commit()
    finished = finish_run(s, gw, run.id)
    assert finished is not None
    return finished


def finish_run(s: Session, gw: StripeGateway, run_id: int) -> ReconciliationRun | None:
    run = s.get(ReconciliationRun, run_id)
    if run is None or run.status != RunStatus.RUNNING:
        return run
    beat = Heartbeat(s, run_id)
    beat(force=True)
    try:
        seen = detect(s, gw, dict(run.filters), run, beat)
        narrowed = any(run.filters.get(k) for k in FILTER_KEYS)
        record_findings(s, run, seen, auto_close=not narrowed)
        run.status = RunStatus.SUCCEEDED
    except (GatewayError, ValueError) as exc:
        s.rollback()
        run = s.get(ReconciliationRun, run_id)
        assert run is not None
        run.status = RunStatus.FAILED
        run.error = str(exc)[:2000]
    run.finished_at = utcnow()
    s.commit()
    return run
