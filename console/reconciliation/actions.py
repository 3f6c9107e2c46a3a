"""Guarded actions on reconciliation: start a run, fix or dismiss a finding."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from flask import after_this_request, current_app, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from wtforms import StringField
from wtforms.validators import InputRequired, Length, Optional, Regexp

from console.actions.framework import (
    Action,
    ActionContext,
    ActionError,
    ActionForm,
    Outcome,
    declare,
    loader,
)
from console.db import utcnow
from console.orders.models import Order, OrderStatus
from console.payments.gateway import GatewayError, gateway
from console.payments.models import Payment, PaymentStatus
from console.reconciliation.models import (
    FindingStatus,
    FindingType,
    ReconciliationFinding,
    ReconciliationRun,
    RunStatus,
)
from console.reconciliation.services import FILTER_KEYS, finish_run
from console.security.permissions import Permission
from console.templating import money

# ------------------------------------------------------------------ start a run


@dataclass
class Reconciler:
    """The target of 'start a run': the console's reconciliation as a whole."""

    running: ReconciliationRun | None
    external_id: str = "stripe"


def load_reconciler(s: Session, _key: str, _lock: bool) -> Reconciler:
    running = s.scalar(
        select(ReconciliationRun).where(ReconciliationRun.status == RunStatus.RUNNING)
    )
    return Reconciler(running)


class RunForm(ActionForm):
    order_id = StringField("Order id", validators=[Optional(), Length(max=64)])
    listing_id = StringField("Listing id", validators=[Optional(), Length(max=64)])
    email = StringField("Buyer or seller email", validators=[Optional(), Length(max=320)])
    payment_intent = StringField("PaymentIntent id", validators=[Optional(), Length(max=255)])
    since = StringField("Since (UTC date, default 30 days ago)", validators=[Optional()])
    until = StringField("Until (UTC date, default now)", validators=[Optional()])


def _run_params(form: ActionForm) -> dict[str, Any]:
    return {k: (form.data.get(k) or "").strip() for k in FILTER_KEYS if form.data.get(k)}


def _start_effect(ctx: ActionContext, _r: Reconciler) -> Outcome:
    run = ReconciliationRun(
        filters=ctx.params, status=RunStatus.RUNNING, started_by_sub=ctx.user.sub
    )
    ctx.session.add(run)
    ctx.session.flush()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    run_id = run.id

    def work() -> None:
        with app.app_context():
            from console.db import worker_session

            with worker_session() as s:
                finish_run(s, gateway(), run_id)

    def start(response: Any) -> Any:
        # After the view returned, so after the action's commit: the run row exists.
        threading.Thread(target=work, name=f"reconcile-{run_id}", daemon=True).start()
        return response

    after_this_request(start)
    return Outcome(
        f"Reconciliation run #{run_id} started; this page shows its progress.", {"run_id": run_id}
    )


start_run = declare(
    Action[Reconciler](
        name="reconciliation:run:start",
        label="Run reconciliation",
        permission=Permission.RECONCILIATION_RUN_START,
        target_type="reconciliation",
        load=load_reconciler,
        precondition=lambda r: (
            None
            if r.running is None
            else f"run #{r.running.id} is still running; wait for it to finish."
        ),
        describe=lambda r: [
            (
                "Effect",
                "Lists Stripe's PaymentIntents and transfers for the window (100 per call) and "
                "compares them with our orders, payments and payouts. Findings seen again are "
                "updated; an unfiltered run closes the ones it no longer sees. Nothing is fixed "
                "automatically.",
            )
        ],
        effect=_start_effect,
        snapshot=lambda r: {"running": r.running.id if r.running else None},
        return_url=lambda r: url_for("reconciliation.index"),
        form=RunForm,
        params=_run_params,
        reason_help="Why you run it now (e.g. after the webhook outage, before releases).",
    )
)


# ------------------------------------------------------------------ findings

load_finding = loader(ReconciliationFinding, ReconciliationFinding.fingerprint)


def finding_snapshot(f: ReconciliationFinding) -> dict[str, Any]:
    return {"status": f.status.value, "closed_by": f.closed_by_sub, "close_reason": f.close_reason}


def finding_url(f: ReconciliationFinding) -> str:
    return url_for("reconciliation.finding", fingerprint=f.fingerprint)


def _open(f: ReconciliationFinding) -> str | None:
    return None if f.status == FindingStatus.OPEN else f"the finding is {f.status.value}."


def _close(ctx: ActionContext, f: ReconciliationFinding, status: FindingStatus) -> None:
    f.status = status
    f.closed_at = utcnow()
    f.closed_by_sub = ctx.user.sub
    f.close_reason = ctx.reason


def _describe(f: ReconciliationFinding) -> list[tuple[str, str]]:
    return [
        ("Finding", f"{f.type.value} ({f.severity.value})"),
        ("Explanation", f.explanation),
    ]


def _dismiss_effect(ctx: ActionContext, f: ReconciliationFinding) -> Outcome:
    _close(ctx, f, FindingStatus.DISMISSED)
    return Outcome("Finding dismissed; it stays in the record with your reason.")


dismiss = declare(
    Action[ReconciliationFinding](
        name="reconciliation:finding:dismiss",
        label="Dismiss",
        permission=Permission.RECONCILIATION_FINDING_DISMISS,
        target_type="finding",
        load=load_finding,
        precondition=_open,
        describe=lambda f: [
            *_describe(f),
            ("Effect", "Closes the finding as expected; no data changes."),
        ],
        effect=_dismiss_effect,
        snapshot=finding_snapshot,
        return_url=finding_url,
    )
)


def _order_of(f: ReconciliationFinding) -> Order | None:
    from sqlalchemy.orm import object_session

    s = object_session(f)
    return s.get(Order, f.order_id) if s is not None and f.order_id else None


def _orders_of(f: ReconciliationFinding) -> list[Order]:
    """The finding's order, for the outbox event (the shop owns the order, not the finding)."""
    order = _order_of(f)
    return [order] if order is not None else []


def _completed_precondition(f: ReconciliationFinding) -> str | None:
    if f.type != FindingType.TRANSFER_ORDER_NOT_COMPLETED:
        return "only for a transfer whose order is not completed."
    return _open(f)


def _mark_completed_effect(ctx: ActionContext, f: ReconciliationFinding) -> Outcome:
    order = _order_of(f)
    if order is None:
        return Outcome("The order no longer exists; nothing to mark.", level="warning")
    order.status = OrderStatus.COMPLETED
    order.completed_at = utcnow()
    order.stripe_transfer_id = f.transfer_id
    _close(ctx, f, FindingStatus.FIXED)
    return Outcome(f"Order {order.external_id} marked completed with transfer {f.transfer_id}.")


mark_completed = declare(
    Action[ReconciliationFinding](
        name="reconciliation:finding:mark_completed",
        label="Mark order completed",
        permission=Permission.RECONCILIATION_FINDING_FIX,
        target_type="finding",
        load=load_finding,
        precondition=_completed_precondition,
        describe=lambda f: [
            *_describe(f),
            ("Effect", f"Sets the order to completed with transfer {f.transfer_id} (runbook 003)."),
        ],
        effect=_mark_completed_effect,
        snapshot=finding_snapshot,
        return_url=finding_url,
        event="order.completed",
        event_records=_orders_of,
    )
)


def _create_precondition(f: ReconciliationFinding) -> str | None:
    if f.type != FindingType.STRIPE_PAID_NO_ORDER:
        return "only for a Stripe payment with no order."
    return _open(f)


def _create_order_effect(ctx: ActionContext, f: ReconciliationFinding) -> Outcome:
    meta = dict(f.details.get("metadata") or {})
    amount = int(f.details.get("amount") or 0)
    currency = str(f.details.get("currency") or "EUR")
    external_id = meta.get("order_id") or f"ORD-REC-{f.id:06d}"
    now = utcnow()
    order = Order(
        external_id=external_id,
        status=OrderStatus.CONFIRMED,
        customer_email=str(
            meta.get("email") or meta.get("customer_email") or "unknown@example.invalid"
        ),
        amount=amount,
        currency=currency,
        payment_intent_id=f.payment_intent_id,
        listing_id=meta.get("listing_id"),
        paid_at=now,
        confirmed_at=now,
        webhook_processed_at=now,  # so a late event is acknowledged, not applied twice
        created_at=now,
    )
    ctx.session.add(order)
    ctx.session.flush()
    payment = ctx.session.scalar(
        select(Payment).where(Payment.payment_intent_id == f.payment_intent_id)
    )
    if payment is None:
        payment = Payment(
            payment_intent_id=f.payment_intent_id or "",
            amount=amount,
            currency=currency,
            status=PaymentStatus.SUCCEEDED,
        )
        ctx.session.add(payment)
    payment.order_id = order.id
    payment.verified_amount, payment.verified_currency, payment.verified_at = amount, currency, now
    f.order_id = order.id
    _close(ctx, f, FindingStatus.FIXED)
    return Outcome(
        f"Order {external_id} created from {f.payment_intent_id} ({money(amount, currency)}).",
        {"order": external_id},
    )


create_order = declare(
    Action[ReconciliationFinding](
        name="reconciliation:finding:create_order",
        label="Create the missing order",
        permission=Permission.RECONCILIATION_FINDING_FIX,
        target_type="finding",
        load=load_finding,
        precondition=_create_precondition,
        describe=lambda f: [
            *_describe(f),
            (
                "Order id",
                str((f.details.get("metadata") or {}).get("order_id") or "a new ORD-REC id"),
            ),
            (
                "Effect",
                "Creates the order, confirmed, from the PaymentIntent's amount and metadata, and "
                "links the payment to it (runbooks 003 and 004).",
            ),
        ],
        effect=_create_order_effect,
        snapshot=finding_snapshot,
        return_url=finding_url,
        event="order.created",
        event_records=_orders_of,
    )
)


def _cancel_precondition(f: ReconciliationFinding) -> str | None:
    if f.type != FindingType.ORDER_PAID_NO_STRIPE:
        return "only for an order Stripe has no payment for."
    return _open(f)


def _mark_cancelled_effect(ctx: ActionContext, f: ReconciliationFinding) -> Outcome:
    order = _order_of(f)
    if order is None:
        return Outcome("The order no longer exists.", level="warning")
    order.status = OrderStatus.CANCELLED
    _close(ctx, f, FindingStatus.FIXED)
    return Outcome(f"Order {order.external_id} marked cancelled: Stripe has no payment for it.")


mark_cancelled = declare(
    Action[ReconciliationFinding](
        name="reconciliation:finding:mark_cancelled",
        label="Mark order cancelled",
        permission=Permission.RECONCILIATION_FINDING_FIX,
        target_type="finding",
        load=load_finding,
        precondition=_cancel_precondition,
        describe=lambda f: [
            *_describe(f),
            ("Effect", "Marks the order cancelled (runbook 003: Stripe has no payment for it)."),
        ],
        effect=_mark_cancelled_effect,
        snapshot=finding_snapshot,
        return_url=finding_url,
        event="order.cancelled",
        event_records=_orders_of,
        danger=True,
    )
)


# ------------------------------------------------------------------ attach the right intent


class AttachForm(ActionForm):
    payment_intent = StringField(
        "The right PaymentIntent id (pi_...)",
        validators=[InputRequired("Enter the PaymentIntent id."), Regexp(r"^pi_[A-Za-z0-9_]+$")],
    )


def _attach_effect(ctx: ActionContext, f: ReconciliationFinding) -> Outcome:
    order = _order_of(f)
    if order is None:
        raise ActionError("The order no longer exists.", status=409)
    pi_id = str(ctx.params["payment_intent"])
    try:
        pi = gateway().retrieve_payment_intent(pi_id)
    except GatewayError as exc:
        raise ActionError(
            f"Stripe: {exc.message}", status=422 if exc.kind == "not_found" else 502
        ) from exc
    received = int(pi.get("amount_received") or pi.get("amount") or 0)
    currency = str(pi.get("currency", "")).upper()
    if pi.get("status") != "succeeded" or received != order.amount or currency != order.currency:
        raise ActionError(
            f"{pi_id} is {pi.get('status')} for {money(received, currency)}; order "
            f"{order.external_id} is {money(order.amount, order.currency)}. Not attached.",
            status=422,
        )
    order.payment_intent_id = pi_id
    _close(ctx, f, FindingStatus.FIXED)
    return Outcome(f"Order {order.external_id} now references {pi_id} (verified at Stripe).")


attach_intent = declare(
    Action[ReconciliationFinding](
        name="reconciliation:finding:attach_intent",
        label="Attach the right PaymentIntent",
        permission=Permission.RECONCILIATION_FINDING_FIX,
        target_type="finding",
        load=load_finding,
        precondition=_cancel_precondition,
        describe=lambda f: [
            *_describe(f),
            (
                "Effect",
                "Retrieves the PaymentIntent you name from Stripe and, only if it succeeded for "
                "exactly the order's amount and currency, points the order at it (runbook 003).",
            ),
        ],
        effect=_attach_effect,
        snapshot=finding_snapshot,
        return_url=finding_url,
        event="order.payment_attached",
        event_records=_orders_of,
        form=AttachForm,
        params=lambda form: {"payment_intent": (form.data.get("payment_intent") or "").strip()},
    )
)


# ------------------------------------------------------------------ the missed event


def _missed_precondition(f: ReconciliationFinding) -> str | None:
    if f.type != FindingType.EVENT_NOT_RECEIVED:
        return "only for an event that never reached us."
    return _open(f)


def _apply_missed_effect(ctx: ActionContext, f: ReconciliationFinding) -> Outcome:
    from console.orders.services import confirm_paid_order

    order = _order_of(f)
    if order is None:
        raise ActionError("The order no longer exists.", status=409)
    try:
        pi = gateway().retrieve_payment_intent(f.payment_intent_id or "")
    except GatewayError as exc:
        raise ActionError(f"Stripe: {exc.message}", status=502) from exc
    result = confirm_paid_order(ctx.session, order, pi)
    _close(ctx, f, FindingStatus.FIXED)
    if result == "amount_mismatch":
        return Outcome(
            f"Applied: the amounts differ, so order {order.external_id} is flagged as possible "
            "fraud, not confirmed.",
            level="warning",
        )
    return Outcome(f"Applied what the missed event said: order {order.external_id} is confirmed.")


apply_missed = declare(
    Action[ReconciliationFinding](
        name="reconciliation:finding:apply_missed_event",
        label="Apply the missed event",
        permission=Permission.WEBHOOKS_EVENT_REPLAY,
        target_type="finding",
        load=load_finding,
        precondition=_missed_precondition,
        describe=lambda f: [
            *_describe(f),
            (
                "Effect",
                "Reads the PaymentIntent's current state from Stripe and applies it as the "
                "missed payment_intent.succeeded event would have: confirm only when it "
                "succeeded for exactly the order's amount (runbook 002).",
            ),
        ],
        effect=_apply_missed_effect,
        snapshot=finding_snapshot,
        return_url=finding_url,
        event=lambda o: "order.marked_paid" if o.status == OrderStatus.CONFIRMED else None,
        event_records=_orders_of,
    )
)


def _mark_refunded_effect(ctx: ActionContext, f: ReconciliationFinding) -> Outcome:
    order = _order_of(f)
    if order is None:
        return Outcome("The order no longer exists.", level="warning")
    order.status = OrderStatus.REFUNDED
    _close(ctx, f, FindingStatus.FIXED)
    return Outcome(f"Order {order.external_id} marked refunded: the money went back elsewhere.")


mark_refunded = declare(
    Action[ReconciliationFinding](
        name="reconciliation:finding:mark_refunded",
        label="Mark order refunded",
        permission=Permission.RECONCILIATION_FINDING_FIX,
        target_type="finding",
        load=load_finding,
        precondition=_cancel_precondition,
        describe=lambda f: [
            *_describe(f),
            (
                "Effect",
                "Marks the order refunded: for an order whose money was returned outside "
                "Stripe (runbook 003). No money moves.",
            ),
        ],
        effect=_mark_refunded_effect,
        snapshot=finding_snapshot,
        return_url=finding_url,
        event="order.refunded",
        event_records=_orders_of,
        danger=True,
    )
)
