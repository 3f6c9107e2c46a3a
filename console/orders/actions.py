"""Guarded actions on orders, declared once each."""

from __future__ import annotations

from typing import Any

from flask import url_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from wtforms import TextAreaField
from wtforms.validators import DataRequired, Length

from console.actions.framework import Action, ActionContext, ActionForm, Outcome, declare
from console.db import utcnow
from console.orders.models import Order, OrderNote
from console.security.permissions import Permission
from console.templating import money


def load_order(s: Session, external_id: str, lock: bool) -> Order | None:
    stmt = select(Order).where(Order.external_id == external_id)
    if lock:
        stmt = stmt.with_for_update()
    return s.scalar(stmt)


def order_snapshot(order: Order) -> dict[str, Any]:
    return {
        "status": order.status.value,
        "amount": order.amount,
        "currency": order.currency,
        "amount_refunded": order.amount_refunded,
        "payment_intent_id": order.payment_intent_id,
        "notes": len(order.notes),
    }


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
