"""Failed and stuck invoices, and the invoice page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template, request
from flask_login import login_required
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from console import db
from console.audit.queries import history_for
from console.db import one_of, utcnow
from console.invoices.actions import Selection, selection_id
from console.invoices.models import Invoice
from console.invoices.queries import STATUS_FILTERS, attention_statement
from console.orders.models import Order
from console.pagination import SortOption, keyset_page
from console.security.guards import require
from console.security.permissions import Permission

bp = Blueprint("invoices", __name__)

SORTS = [
    SortOption("updated", "Age", Invoice.updated_at),
    SortOption("attempts", "Attempts", Invoice.attempts),
    SortOption("amount", "Amount", Invoice.amount),
]


@bp.get("/invoices/failed")
@login_required
@require(Permission.QUEUES_VIEW)
def failed() -> Any:
    """Invoices that failed, are stuck in draft/generated, or are due for retry."""
    s = db.session()
    args = request.args.to_dict()
    filters = {k: args.get(k, "") for k in ("status", "q")}
    page = keyset_page(
        s,
        attention_statement(utcnow(), filters),
        id_column=Invoice.id,
        sort_options=SORTS,
        args=args,
        default_sort="updated",
        default_direction="asc",
    )
    order_ids = {i.order_id for i in page.rows if i.order_id}
    orders = (
        {o.id: o for o in s.scalars(select(Order).where(one_of(Order.id, order_ids)))}
        if order_ids
        else {}
    )
    return render_template(
        "invoices/failed.html",
        page=page,
        args=args,
        filters=filters,
        statuses=STATUS_FILTERS,
        orders=orders,
        bulk_target=Selection(selection_id(filters), filters, list(page.rows)),
    )


@bp.get("/invoices/<external_id>")
@login_required
@require(Permission.QUEUES_VIEW)
def detail(external_id: str) -> Any:
    """One invoice with every transmission attempt and its history."""
    s = db.session()
    invoice = s.scalar(
        select(Invoice)
        .where(Invoice.external_id == external_id)
        .options(selectinload(Invoice.transmissions))
    )
    if invoice is None:
        abort(404, f"There is no invoice {external_id}.")
    order = s.get(Order, invoice.order_id) if invoice.order_id else None
    return render_template(
        "invoices/detail.html",
        invoice=invoice,
        order=order,
        history_entries=history_for(s, "invoice", invoice.external_id),
    )
