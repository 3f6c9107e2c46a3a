"""Guarded actions on reconciliation: start a run, fix or dismiss a finding."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import url_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from wtforms import StringField
from wtforms.validators import InputRequired, Length, Optional, Regexp, ValidationError

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
from console.jobs.engine import enqueue
from console.jobs.tasks import RECONCILIATION_RUN
from console.orders.actions import refund_order as order_refund
from console.orders.actions import refundable
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
from console.reconciliation.services import FILTER_KEYS, abandon, is_alive
from console.security.permissions import Permission
from console.templating import money

# ------------------------------------------------------------------ start a run

ID_HELP = "Letters, digits and ._- only."


@dataclass
class Reconciler:
    """The target of 'start a run': the console's reconciliation as a whole."""

    running: ReconciliationRun | None
    """A run a worker is executing (or about to): a second one waits for it."""
    dead: list[ReconciliationRun]
    """Runs still marked running whose worker stopped: the next start closes them."""
    external_id: str = "stripe"


def load_reconciler(s: Session, _key: str, lock: bool) -> Reconciler:
    stmt = select(ReconciliationRun).where(ReconciliationRun.status == RunStatus.RUNNING)
    if lock:
        stmt = stmt.with_for_update(skip_locked=True)
    now = utcnow()
    runs = list(s.scalars(stmt.order_by(ReconciliationRun.id)))
    alive = [r for r in runs if is_alive(r, now)]
    return Reconciler(alive[0] if alive else None, [r for r in runs if not is_alive(r, now)])


EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)


def _parse_utc(raw: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _utc_date(_form: ActionForm, field: Any) -> None:
    """A filter date must parse before a run starts (not fail inside the worker)."""
    raw = (field.data or "").strip()
    if not raw:
        return
    value = _parse_utc(raw)
    if value is None:
        raise ValidationError("Write a date as YYYY-MM-DD (UTC), e.g. 2026-11-30.")
    if not EARLIEST <= value <= LATEST:
        raise ValidationError("The date is out of range (2000 to 2100).")


class RunForm(ActionForm):
    order_id = StringField(
        "Order id",
        validators=[Optional(), Length(max=64), Regexp(r"^[A-Za-z0-9._-]+$", message=ID_HELP)],
    )
    listing_id = StringField(
        "Listing id",
        validators=[Optional(), Length(max=64), Regexp(r"^[A-Za-z0-9._-]+$", message=ID_HELP)],
    )
    email = StringField(
        "Buyer or seller email",
        validators=[
            Optional(),
            Length(max=320),
            Regexp(r"^[^@\s]+@[^@\s]+$", message="Write an email address."),
        ],
    )
    payment_intent = StringField(
        "PaymentIntent id",
        validators=[
            Optional(),
            Length(max=255),
            Regexp(r"^pi_[A-Za-z0-9_]+$", message="A PaymentIntent id starts with pi_."),
        ],
    )
    since = StringField("Since (UTC date, default 30 days ago)", validators=[Optional(), _utc_date])
    until = StringField("Until (UTC date, default now)", validators=[Optional(), _utc_date])

    def validate_until(self, field: Any) -> None:
        since = _parse_utc(self.since.data or "")
        until = _parse_utc(field.data or "")
        if since is not None and until is not None and until <= since:
            raise ValidationError("Until must be after since.")


def _run_params(form: ActionForm) -> dict[str, Any]:
    return {k: (form.data.get(k) or "").strip() for k in FILTER_KEYS if form.data.get(k)}


def _start_effect(ctx: ActionContext, r: Reconciler) -> Outcome:
    now = utcnow()
    for dead in r.dead:
        abandon(dead, now)
    run = ReconciliationRun(
        filters=ctx.params, status=RunStatus.RUNNING, started_by_sub=ctx.user.sub
    )
    ctx.session.add(run)
    ctx.session.flush()
    # Enqueued in this transaction: a worker runs it once the start committed.
    job_id = enqueue(
        ctx.session,
        RECONCILIATION_RUN,
        queue="reconcile",
        lock=f"reconciliation-run-{run.id}",
        run_id=run.id,
    )
    return Outcome(
        f"Reconciliation run #{run.id} started; this page shows its progress.",
        {"run_id": run.id, "job_id": job_id, "abandoned": [d.id for d in r.dead]},
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
        snapshot=lambda r: {
            "running": r.running.id if r.running else None,
            "abandoned": [d.id for d in r.dead],
        },
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


# ------------------------------------------------------------------ refund an amount mismatch


def _refund_finding_precondition(f: ReconciliationFinding) -> str | None:
    if f.type != FindingType.AMOUNT_MISMATCH:
        return "only for an amount mismatch."
    closed = _open(f)
    if closed is not None:
        return closed
    order = _order_of(f)
    if order is None:
        return "the finding names no order."
    return order_refund.precondition(order)


def _refund_finding_describe(f: ReconciliationFinding) -> list[tuple[str, str]]:
    order = _order_of(f)
    return [*_describe(f), *(order_refund.describe(order) if order is not None else [])]


def _refund_finding_prefill(f: ReconciliationFinding, form: ActionForm) -> None:
    order = _order_of(f)
    if order is not None and order_refund.prefill is not None:
        order_refund.prefill(order, form)


def _refund_finding_currency(f: ReconciliationFinding) -> str:
    order = _order_of(f)
    return refundable(order)[1] if order is not None else "EUR"


def _refund_finding_effect(ctx: ActionContext, f: ReconciliationFinding) -> Outcome:
    """Runbooks 002/003: refund what Stripe took on the mismatching order; the finding is fixed.

    The order's own refund (same money protocol, same key scheme), on the order locked
    NOWAIT like its own Refund button would.
    """
    order = ctx.session.get(Order, f.order_id, with_for_update={"nowait": True})
    if order is None:
        raise ActionError("The order no longer exists.", status=409)
    outcome = order_refund.effect(ctx, order)
    _close(ctx, f, FindingStatus.FIXED)
    return outcome


refund_mismatch = declare(
    Action[ReconciliationFinding](
        name="reconciliation:finding:refund",
        label="Refund the order",
        permission=Permission.ORDERS_ORDER_REFUND,
        target_type="finding",
        load=load_finding,
        precondition=_refund_finding_precondition,
        describe=_refund_finding_describe,
        effect=_refund_finding_effect,
        snapshot=finding_snapshot,
        return_url=finding_url,
        form=order_refund.form,
        params=order_refund.params,
        prefill=_refund_finding_prefill,
        currency=_refund_finding_currency,
        high_risk=True,
        danger=True,
        event="order.refunded",
        event_records=_orders_of,
    )
)
