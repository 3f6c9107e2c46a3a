"""The inventory drift queue (runbook 000) and the item page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template, request
from flask_login import login_required
from sqlalchemy import select

from console import db
from console.audit.queries import history_for
from console.inventory.models import (
    InventoryItem,
    InventoryLedgerEntry,
    InventoryReservation,
    ReservationStatus,
)
from console.inventory.services import drift_facts, drift_statement
from console.pagination import SortOption, keyset_page
from console.security.guards import require
from console.security.permissions import Permission

bp = Blueprint("inventory", __name__)

SORTS = [
    SortOption("since", "Drifting since", InventoryItem.drift_since),
    SortOption("drift", "Difference", InventoryItem.drift_size),
    SortOption("sku", "SKU", InventoryItem.sku),
]
LEDGER_PAGE = 50


def _min_drift(raw: str) -> int | None:
    try:
        value = int(raw)
    except ValueError:
        return None
    return min(value, 2**31 - 1) if value > 0 else None


@bp.get("/inventory/drift")
@login_required
@require(Permission.QUEUES_VIEW)
def drift() -> Any:
    """Items whose stock count differs from their ledger sum, oldest drift first."""
    s = db.session()
    args = request.args.to_dict()
    sku = (args.get("sku") or "").strip()[:64]
    min_drift = _min_drift(args.get("min", ""))
    page = keyset_page(
        s,
        drift_statement(sku, min_drift),
        id_column=InventoryItem.id,
        sort_options=SORTS,
        args=args,
        default_sort="since",
        default_direction="asc",
    )
    facts = drift_facts(s, [i.sku for i in page.rows])
    return render_template(
        "inventory/drift.html",
        page=page,
        sku=sku,
        min_drift=min_drift,
        facts=facts,
    )


@bp.get("/inventory/items/<sku>")
@login_required
@require(Permission.QUEUES_VIEW)
def item(sku: str) -> Any:
    """One item: stock, ledger, pending reservations and its history."""
    s = db.session()
    found = s.scalar(select(InventoryItem).where(InventoryItem.sku == sku))
    if found is None:
        abort(404, f"There is no inventory item {sku}.")
    ledger = s.scalars(
        select(InventoryLedgerEntry)
        .where(InventoryLedgerEntry.sku == sku)
        .order_by(InventoryLedgerEntry.id.desc())
        .limit(LEDGER_PAGE)
    ).all()
    pending = s.scalars(
        select(InventoryReservation)
        .where(
            InventoryReservation.sku == sku,
            InventoryReservation.status == ReservationStatus.RESERVED,
        )
        .order_by(InventoryReservation.created_at)
        .limit(LEDGER_PAGE)
    ).all()
    return render_template(
        "inventory/item.html",
        item=found,
        ledger=ledger,
        pending=pending,
        history_entries=history_for(s, "inventory_item", found.sku),
    )
