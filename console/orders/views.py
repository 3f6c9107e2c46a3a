"""Stuck orders and the order page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template, request
from flask_login import login_required
from jinja2_fragments.flask import render_block
from sqlalchemy import or_, select
from sqlalchemy.orm import selectinload

from console import db
from console.audit.queries import history_for
from console.db import one_of, utcnow
from console.inventory.models import InventoryReservation
from console.orders.facts import prefetch
from console.orders.models import Order
from console.orders.queries import (
    REASONS,
    pending_events_by_intent,
    stuck_condition,
    stuck_reason_column,
)
from console.pagination import SortOption, keyset_page
from console.payments.models import Payment, WebhookEvent
from console.security.guards import require
from console.security.permissions import Permission

bp = Blueprint("orders", __name__)

STUCK_SORTS = [
    SortOption("created", "Age", Order.created_at),
    SortOption("amount", "Amount", Order.amount),
    SortOption("updated", "Last change", Order.updated_at),
]


def search_condition(q: str):  # type: ignore[no-untyped-def]
    """Match an order id, a customer email or a PaymentIntent id exactly."""
    q = q.strip()
    return or_(
        Order.external_id == q,
        Order.customer_email == q.lower(),
        Order.payment_intent_id == q,
        Order.checkout_session_id == q,
    )


@bp.get("/orders/stuck")
@login_required
@require(Permission.QUEUES_VIEW)
def stuck() -> Any:
    """Orders Stripe took money for that did not finish, with why and since when."""
    now = utcnow()
    s = db.session()
    reason = request.args.get("reason") or None
    if reason not in REASONS:
        reason = None
    q = (request.args.get("q") or "").strip()[:200]
    stmt = select(Order, stuck_reason_column(now).label("reason")).where(
        stuck_condition(now, reason)
    )
    if q:
        stmt = stmt.where(search_condition(q))
    page = keyset_page(
        s,
        stmt,
        id_column=Order.id,
        sort_options=STUCK_SORTS,
        args=request.args.to_dict(),
        default_sort="created",
        default_direction="asc",
        scalars=False,
    )
    orders = [o for o, _why in page.rows]
    prefetch(s, orders)
    pending = pending_events_by_intent(
        s, [o.payment_intent_id for o in orders if o.payment_intent_id]
    )
    ctx = {
        "page": page,
        "reasons": REASONS,
        "reason": reason,
        "q": q,
        "sorts": STUCK_SORTS,
        "pending_events": pending,
    }
    if request.headers.get("HX-Request") == "true" and request.headers.get("HX-Target") == "queue":
        return render_block("orders/stuck.html", "queue", **ctx)
    return render_template("orders/stuck.html", **ctx)


@bp.get("/orders/<external_id>")
@login_required
@require(Permission.QUEUES_VIEW)
def detail(external_id: str) -> Any:
    """Everything about one order: payment, events, reservation, notes, history."""
    s = db.session()
    order = s.scalar(
        select(Order)
        .where(Order.external_id == external_id)
        .options(selectinload(Order.lines), selectinload(Order.notes))
    )
    if order is None:
        abort(404, f"There is no order {external_id}.")
    now = utcnow()
    reason = s.scalar(
        select(stuck_reason_column(now)).where(Order.id == order.id, stuck_condition(now))
    )
    payments = s.scalars(
        select(Payment)
        .where(
            or_(Payment.order_id == order.id, Payment.payment_intent_id == order.payment_intent_id)
        )
        .order_by(Payment.id)
    ).all()
    object_ids = [p.payment_intent_id for p in payments] + (
        [order.checkout_session_id] if order.checkout_session_id else []
    )
    events = (
        s.scalars(
            select(WebhookEvent)
            .where(one_of(WebhookEvent.object_id, object_ids))
            .order_by(WebhookEvent.received_at)
        ).all()
        if object_ids
        else []
    )
    reservations = s.scalars(
        select(InventoryReservation).where(InventoryReservation.order_id == order.id)
    ).all()
    return render_template(
        "orders/detail.html",
        order=order,
        stuck_reason=REASONS.get(reason or ""),
        payments=payments,
        events=events,
        reservations=reservations,
        history_entries=history_for(s, "order", order.external_id),
    )
