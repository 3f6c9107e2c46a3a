"""Guarded actions on orders, declared once each."""

from __future__ import annotations

from typing import Any

from flask import url_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from wtforms import TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length

from console.actions.framework import (
    Action,
    ActionContext,
    ActionError,
    ActionForm,
    MoneyField,
    Outcome,
    audited_record,
    declare,
    loader,
)
from console.audit.service import record
from console.currency import format_major
from console.db import utcnow
from console.inventory.models import InventoryReservation, ReservationStatus
from console.ops.metrics import REFUND_OPERATIONS
from console.orders.facts import known
from console.orders.models import Order, OrderNote, OrderStatus
from console.payments import money as money_service
from console.payments.gateway import GatewayError, StripeGateway, gateway
from console.payments.models import MoneyMovement, MovementKind, Payment, PaymentStatus
from console.security.permissions import Permission
from console.suppliers.gateway import SupplierError
from console.templating import money

load_order = loader(Order, Order.external_id)


def order_snapshot(order: Order) -> dict[str, Any]:
    return {
        "status": order.status.value,
        "amount": order.amount,
        "currency": order.currency,
        "amount_refunded": order.amount_refunded,
        "payment_intent_id": order.payment_intent_id,
        "notes": len(order.notes),
    }


audited_record(Order, "order", lambda o: o.external_id, order_snapshot)


def order_url(order: Order) -> str:
    return url_for("orders.detail", external_id=order.external_id)


class NoteForm(ActionForm):
    reason = TextAreaField(
        "Note",
        validators=[
            DataRequired("Write the note."),
            Length(min=3, max=2000, message="A note is 3 to 2000 characters."),
        ],
    )


def _describe_note(order: Order) -> list[tuple[str, str]]:
    return [
        ("Order", order.external_id),
        ("Customer", order.customer_email),
        ("Amount", money(order.amount, order.currency)),
        ("Effect", "Adds an internal note to the order; nothing else changes."),
    ]


def _add_note(ctx: ActionContext, order: Order) -> Outcome:
    order.notes.append(
        OrderNote(
            author_sub=ctx.user.sub,
            author_email=ctx.user.email,
            body=ctx.reason,
            created_at=utcnow(),
        )
    )
    return Outcome(f"Note added to order {order.external_id}.")


add_note = declare(
    Action[Order](
        name="orders:note:add",
        label="Add note",
        permission=Permission.ORDERS_NOTE_ADD,
        target_type="order",
        load=load_order,
        precondition=lambda order: None,
        describe=_describe_note,
        effect=_add_note,
        snapshot=order_snapshot,
        return_url=order_url,
        form=NoteForm,
        reason_label="Note",
        reason_help="The note is stored on the order and in the audit log, as written.",
    )
)


# ------------------------------------------------------------------ shared helpers


def order_row(order: Order) -> tuple[str, str, dict[str, Any]]:
    """The stuck-orders row of this order, for an htmx swap after an action."""
    from console.orders.queries import REASONS, pending_events_by_intent, stuck_reason_column

    s = object_session_of(order)
    why = s.scalar(select(stuck_reason_column(utcnow())).where(Order.id == order.id)) or ""
    pending = pending_events_by_intent(
        s, [order.payment_intent_id] if order.payment_intent_id else []
    )
    return (
        "orders/stuck.html",
        "row",
        {"order": order, "why": why, "reasons": REASONS, "pending_events": pending},
    )


def object_session_of(obj: Any) -> Session:
    from sqlalchemy.orm import object_session

    s = object_session(obj)
    if s is None:
        raise RuntimeError("detached object")
    return s


def succeeded_payment(order: Order) -> Payment | None:
    facts = known(order)
    if facts is not None:
        return facts.payments.get(order.id)
    s = object_session_of(order)
    return s.scalar(
        select(Payment)
        .where(
            (Payment.order_id == order.id) | (Payment.payment_intent_id == order.payment_intent_id),
            Payment.status.in_(
                [PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED]
            ),
        )
        .order_by(Payment.id.desc())
    )


def stripe_failure(exc: GatewayError, doing: str) -> ActionError:
    """Turn a Stripe failure into a message a person can act on."""
    if exc.kind == "rate_limited":
        return ActionError(
            f"Stripe is rate limiting us, so {doing} did not happen. Wait a minute and try again.",
            status=503,
            details={"stripe": exc.kind},
        )
    if exc.kind in ("unavailable", "timeout"):
        return ActionError(
            f"Stripe did not answer ({exc.message}), so {doing} did not happen. Try again shortly.",
            status=502,
            details={"stripe": exc.kind},
        )
    if exc.kind == "not_found":
        return ActionError(
            f"Stripe does not know this object ({exc.message}).",
            status=422,
            details={"stripe": exc.kind},
        )
    return ActionError(f"Stripe refused: {exc.message}", status=422, details={"stripe": exc.kind})


# ------------------------------------------------------------------ verify and mark paid


def _verify_precondition(order: Order) -> str | None:
    if order.amount_mismatch:
        return "the payment does not match the order (possible fraud): refund instead."
    if order.status not in (OrderStatus.PENDING, OrderStatus.PAID):
        return f"the order is already {order.status.value}."
    if not order.payment_intent_id:
        return "the order has no PaymentIntent to verify."
    return None


def _verify_describe(order: Order) -> list[tuple[str, str]]:
    return [
        ("Order", f"{order.external_id} ({order.status.value})"),
        ("Expected", money(order.amount, order.currency)),
        ("PaymentIntent", order.payment_intent_id or "—"),
        (
            "Effect",
            "Retrieves the PaymentIntent from Stripe. Only if it succeeded for exactly "
            "this amount and currency is the order confirmed (and its reservations). "
            "On any mismatch the order is flagged as possible fraud and nothing is confirmed.",
        ),
    ]


def _verify_effect(ctx: ActionContext, order: Order) -> Outcome:
    from console.orders.services import confirm_paid_order

    try:
        pi = gateway().retrieve_payment_intent(order.payment_intent_id or "")
    except GatewayError as exc:
        raise stripe_failure(exc, "the verification") from exc
    status = pi.get("status")
    received = int(pi.get("amount_received") or pi.get("amount") or 0)
    stripe_currency = str(pi.get("currency", "")).upper()
    facts: dict[str, Any] = {
        "stripe_status": status,
        "stripe_amount": received,
        "stripe_currency": str(pi.get("currency", "")).upper(),
    }
    if status != "succeeded":
        raise ActionError(
            f"Stripe says PaymentIntent {order.payment_intent_id} is '{status}', not succeeded: "
            "the order was not marked paid.",
            status=422,
            details=facts,
        )
    result = confirm_paid_order(ctx.session, order, pi)
    if result == "amount_mismatch":
        return Outcome(
            f"Stripe received {money(received, stripe_currency)} but the order is "
            f"{money(order.amount, order.currency)}: order {order.external_id} is flagged as "
            "possible fraud and was not confirmed. Refund it.",
            details=facts,
        )
    return Outcome(
        f"Verified at Stripe: order {order.external_id} is paid and confirmed.", details=facts
    )


verify_and_mark_paid = declare(
    Action[Order](
        name="orders:payment:verify",
        label="Verify with Stripe and mark paid",
        permission=Permission.ORDERS_PAYMENT_VERIFY,
        target_type="order",
        load=load_order,
        precondition=_verify_precondition,
        describe=_verify_describe,
        effect=_verify_effect,
        snapshot=order_snapshot,
        return_url=order_url,
        row=order_row,
        event=lambda o: "order.marked_paid" if o.status == OrderStatus.CONFIRMED else None,
    )
)


# ------------------------------------------------------------------ confirm reservations


def _unconfirmed(order: Order) -> list[InventoryReservation]:
    facts = known(order)
    if facts is not None:
        return facts.reservations.get(order.id, [])
    s = object_session_of(order)
    return list(
        s.scalars(
            select(InventoryReservation).where(
                InventoryReservation.order_id == order.id,
                InventoryReservation.status == ReservationStatus.RESERVED,
            )
        )
    )


def _confirm_res_precondition(order: Order) -> str | None:
    if order.status not in (OrderStatus.PAID, OrderStatus.CONFIRMED):
        return f"the order is {order.status.value}; only paid orders hold stock."
    if order.amount_mismatch:
        return "the payment does not match the order: do not hand out stock."
    if not _unconfirmed(order):
        return "the order has no unconfirmed reservation."
    return None


def _confirm_res_describe(order: Order) -> list[tuple[str, str]]:
    lines = [("Order", f"{order.external_id} ({order.status.value})")]
    for r in _unconfirmed(order):
        lines.append(("Reservation", f"{r.external_id}: {r.quantity} x {r.sku}"))
    lines.append(("Effect", "Marks these reservations confirmed (runbook 000, manual confirm)."))
    return lines


def _confirm_res_effect(ctx: ActionContext, order: Order) -> Outcome:
    from console.orders.services import confirm_reservations

    n = confirm_reservations(ctx.session, order)
    return Outcome(f"Confirmed {n} reservation(s) of order {order.external_id}.", {"confirmed": n})


def _reservation_snapshot(order: Order) -> dict[str, Any]:
    snap = order_snapshot(order)
    snap["unconfirmed_reservations"] = [r.external_id for r in _unconfirmed(order)]
    return snap


confirm_reservation = declare(
    Action[Order](
        name="inventory:reservation:confirm",
        label="Confirm reservation",
        permission=Permission.INVENTORY_RESERVATION_CONFIRM,
        target_type="order",
        load=load_order,
        precondition=_confirm_res_precondition,
        describe=_confirm_res_describe,
        effect=_confirm_res_effect,
        snapshot=_reservation_snapshot,
        return_url=order_url,
        row=order_row,
        event="order.reservation_confirmed",
    )
)


# ------------------------------------------------------------------ cancel


def _cancel_precondition(order: Order) -> str | None:
    if order.status not in (OrderStatus.PENDING, OrderStatus.PAID):
        return f"the order is {order.status.value}."
    if succeeded_payment(order) is not None:
        return "Stripe captured money for this order: refund it instead of cancelling."
    return None


def _cancel_effect(ctx: ActionContext, order: Order) -> Outcome:
    order.status = OrderStatus.CANCELLED
    released = 0
    for r in _unconfirmed(order):
        r.status = ReservationStatus.RELEASED
        released += 1
    return Outcome(
        f"Order {order.external_id} cancelled; {released} reservation(s) released.",
        {"released_reservations": released},
    )


cancel_order = declare(
    Action[Order](
        name="orders:order:cancel",
        label="Cancel order",
        permission=Permission.ORDERS_ORDER_CANCEL,
        target_type="order",
        load=load_order,
        precondition=_cancel_precondition,
        describe=lambda o: [
            ("Order", f"{o.external_id} ({o.status.value})"),
            ("Amount", money(o.amount, o.currency)),
            ("Effect", "Cancels the order and releases its reservations. No money moves."),
        ],
        effect=_cancel_effect,
        snapshot=order_snapshot,
        return_url=order_url,
        danger=True,
        row=order_row,
        event="order.cancelled",
    )
)


# ------------------------------------------------------------------ refund


def refundable(order: Order) -> tuple[int, str]:
    """What can still be refunded: captured at Stripe minus refunds so far."""
    payment = succeeded_payment(order)
    if payment is None:
        return 0, order.currency
    captured = payment.verified_amount if payment.verified_amount is not None else payment.amount
    currency = payment.verified_currency or payment.currency
    return max(captured - max(payment.amount_refunded, order.amount_refunded), 0), currency


class RefundForm(ActionForm):
    amount = MoneyField(
        "Amount to refund",
        validators=[InputRequired("Enter the amount to refund.")],
    )


def _refund_params(form: ActionForm) -> dict[str, Any]:
    minor = getattr(form, "amount").minor  # noqa: B009  (declared on RefundForm)
    return {} if minor is None else {"amount_minor": minor}


def _refund_prefill(order: Order, form: ActionForm) -> None:
    amount, currency = refundable(order)
    form.amount.data = format_major(amount, currency)


def _refund_precondition(order: Order) -> str | None:
    amount, _ = refundable(order)
    if amount <= 0:
        return "nothing captured remains to refund."
    facts = known(order)
    if facts is not None:
        in_flight = order.external_id in facts.in_flight
    else:
        s = object_session_of(order)
        in_flight = money_service.in_flight_for(s, "order", order.external_id) is not None
    if in_flight:
        return (
            "a refund for this order is still in flight at Stripe; `payouts resume` will "
            "finish it. Do not refund again."
        )
    return None


def _refund_describe(order: Order) -> list[tuple[str, str]]:
    amount, currency = refundable(order)
    return [
        ("Order", f"{order.external_id} ({order.status.value})"),
        ("Customer", order.customer_email),
        ("PaymentIntent", order.payment_intent_id or "—"),
        ("Refundable now", money(amount, currency)),
        (
            "Effect",
            "Refunds the amount you enter to the customer's card through Stripe. "
            "Money leaves the platform; this cannot be undone.",
        ),
    ]


def _refund_effect(ctx: ActionContext, order: Order) -> Outcome:
    amount = int(ctx.params.get("amount_minor") or 0)
    available, currency = refundable(order)
    if amount <= 0 or amount > available:
        raise ActionError(
            f"The amount must be more than 0 and at most {money(available, currency)}.",
            status=422,
        )
    payment = succeeded_payment(order)
    assert payment is not None
    key = f"refund-{order.external_id}-{ctx.idempotency_key}"
    movement = money_service.begin(
        kind=MovementKind.REFUND,
        idempotency_key=key,
        target_type="order",
        target_id=order.external_id,
        amount=amount,
        currency=currency,
        payload={"payment_intent": payment.payment_intent_id, "amount": amount},
        actor_sub=ctx.user.sub,
    )
    try:
        refund = gateway().create_refund(
            payment_intent=payment.payment_intent_id,
            amount=amount,
            idempotency_key=key,
            metadata={"order_id": order.external_id, "movement_id": str(movement.id)},
        )
    except GatewayError as exc:
        REFUND_OPERATIONS.labels("failure").inc()
        if exc.outcome_unknown:
            money_service.note_call(movement.id, str(exc), failed=False)
            raise ActionError(
                "Stripe did not confirm the refund. It may have happened: the attempt is kept "
                "in flight and `payouts resume` will finish it with the same key. Do not "
                "refund again.",
                status=502,
                details={"stripe": exc.kind, "movement_id": movement.id},
            ) from exc
        money_service.note_call(movement.id, str(exc), failed=True)
        raise stripe_failure(exc, "the refund") from exc
    apply_refund(ctx.session, order, payment, amount)
    money_service.succeed(ctx.session, movement.id, refund["id"])
    REFUND_OPERATIONS.labels("success").inc()
    return Outcome(
        f"Refunded {money(amount, currency)} on order {order.external_id} (Stripe {refund['id']}).",
        {"refund_id": refund["id"], "movement_id": movement.id, "idempotency_key": key},
    )


def apply_refund(s: Session, order: Order, payment: Payment, amount: int) -> None:
    payment.amount_refunded += amount
    order.amount_refunded += amount
    captured = payment.verified_amount if payment.verified_amount is not None else payment.amount
    if payment.amount_refunded >= captured:
        payment.status = PaymentStatus.REFUNDED
        order.status = OrderStatus.REFUNDED
    else:
        payment.status = PaymentStatus.PARTIALLY_REFUNDED


@money_service.finisher(MovementKind.REFUND)
def finish_refund(s: Session, gw: StripeGateway, movement: MoneyMovement) -> str:
    """Re-issue an in-flight refund with its key and apply it (for `payouts resume`)."""
    order = load_order(s, movement.target_id, True)
    if order is None:
        raise LookupError(f"order {movement.target_id} not found")
    payment = s.scalar(
        select(Payment).where(Payment.payment_intent_id == movement.payload["payment_intent"])
    )
    refund = gw.create_refund(
        payment_intent=movement.payload["payment_intent"],
        amount=movement.amount,
        idempotency_key=movement.idempotency_key,
        metadata={"order_id": order.external_id, "movement_id": str(movement.id)},
    )
    if payment is not None:
        apply_refund(s, order, payment, movement.amount)
    actor: dict[str, Any] = {"sub": "system:payouts-resume", "email": None, "roles": []}
    why = "finished an in-flight refund with its original idempotency key"
    entry = record(
        s,
        action="orders:order:refund",
        outcome="success",
        actor=actor,
        target_type="order",
        target_id=order.external_id,
        reason=why,
        params={"amount_minor": movement.amount},
        details={"refund_id": refund["id"], "movement_id": movement.id},
    )
    from console.integrations.outbox import emit

    emit(s, "order.refunded", order, actor=actor, reason=why, audit_seq=entry.seq)
    return str(refund["id"])


refund_order = declare(
    Action[Order](
        name="orders:order:refund",
        label="Refund",
        permission=Permission.ORDERS_ORDER_REFUND,
        target_type="order",
        load=load_order,
        precondition=_refund_precondition,
        describe=_refund_describe,
        effect=_refund_effect,
        snapshot=order_snapshot,
        return_url=order_url,
        form=RefundForm,
        params=_refund_params,
        prefill=_refund_prefill,
        currency=lambda order: refundable(order)[1],
        high_risk=True,
        danger=True,
        row=order_row,
        event="order.refunded",
    )
)


# ------------------------------------------------------------------ supplier forward


def _forward_precondition(order: Order) -> str | None:
    if order.status != OrderStatus.PROCESSING:
        return f"the order is {order.status.value}, not processing."
    if order.supplier_forwarded_at is not None:
        ref = f" (reference {order.supplier_order_ref})" if order.supplier_order_ref else ""
        return f"the order was already forwarded to the supplier{ref}."
    if order.supplier_id is None:
        return "the order has no supplier to forward it to."
    return None


def _forward_describe(order: Order) -> list[tuple[str, str]]:
    from console.suppliers.models import Supplier
    from console.suppliers.services import forward_key

    s = object_session_of(order)
    supplier = s.get(Supplier, order.supplier_id) if order.supplier_id else None
    lines = ", ".join(f"{line.quantity} x {line.sku}" for line in order.lines) or "none recorded"
    return [
        ("Order", f"{order.external_id} ({order.status.value})"),
        ("Paid", money(order.amount, order.currency)),
        ("Supplier", supplier.name if supplier else "—"),
        ("Lines", lines),
        ("Idempotency key", forward_key(order)),
        (
            "Effect",
            "Sends the order to the supplier's API and records the supplier's reference; the "
            "order leaves the stuck queue. The key is the same on every attempt, so a retry "
            "after a timeout or a second click never gives the supplier a second order.",
        ),
    ]


def _forward_effect(ctx: ActionContext, order: Order) -> Outcome:
    from console.suppliers.gateway import supplier_gateway
    from console.suppliers.services import forward_key, forward_order

    gw = supplier_gateway()
    try:
        result = forward_order(ctx.session, gw, order)
    except SupplierError as exc:
        raise supplier_failure(exc, forward_key(order), gw.timeout) from exc
    again = " (the supplier already had it under this key: no second order)"
    if not result.replayed:
        again = ""
    return Outcome(
        f"Order {order.external_id} forwarded to the supplier: reference "
        f"{result.reference}{again}.",
        {
            "supplier_ref": result.reference,
            "supplier_status": result.status,
            "replayed": result.replayed,
            "idempotency_key": forward_key(order),
        },
    )


def supplier_failure(exc: SupplierError, key: str, timeout: float) -> ActionError:
    """Turn a supplier failure into a message a person can act on."""
    details = {
        "supplier_error": exc.kind,
        "retryable": exc.retryable,
        "http_status": exc.http_status,
        "idempotency_key": key,
    }
    safe = (
        "Forwarding again is safe: it sends the same idempotency key, so the supplier "
        "answers with the order it already has instead of creating a second one."
    )
    if exc.kind == "timeout":
        return ActionError(
            f"The supplier did not answer within {timeout:g} s, so the order is not recorded as "
            f"forwarded. It may have reached the supplier. {safe}",
            status=504,
            details=details,
        )
    if exc.kind == "bad_reply":
        return ActionError(
            f"The supplier's answer could not be read ({exc}). It may have taken the order. {safe}",
            status=502,
            details=details,
        )
    if exc.retryable:
        return ActionError(
            f"The supplier is not reachable right now ({exc}); the order was not forwarded. "
            f"Try again shortly. {safe}",
            status=503 if exc.kind == "rate_limited" else 502,
            details=details,
        )
    if exc.kind == "not_configured":
        return ActionError(
            f"The supplier API is not set up on this console ({exc}).", status=503, details=details
        )
    return ActionError(
        f"The supplier refused the order ({exc}). Sending it again will not help: check the "
        "order with the supplier.",
        status=422,
        details=details,
    )


def forward_row(order: Order) -> tuple[str, str, dict[str, Any]]:
    """The row the person acted on: the supplier queue's, else the stuck-orders row."""
    from flask import request

    if (request.form.get("next") or "").startswith(url_for("suppliers.index")):
        from console.suppliers.views import order_row_context

        return "suppliers/index.html", "order_row", order_row_context(order)
    return order_row(order)


forward_to_supplier = declare(
    Action[Order](
        name="orders:supplier:forward",
        label="Forward to supplier",
        permission=Permission.ORDERS_SUPPLIER_FORWARD,
        target_type="order",
        load=load_order,
        precondition=_forward_precondition,
        describe=_forward_describe,
        effect=_forward_effect,
        snapshot=lambda o: {
            **order_snapshot(o),
            "supplier_forwarded_at": o.supplier_forwarded_at,
            "supplier_order_ref": o.supplier_order_ref,
        },
        return_url=order_url,
        row=forward_row,
        reason_help="Why you forward it by hand (e.g. the automatic forward failed at 10:02).",
        event="order.forwarded_to_supplier",
    )
)
