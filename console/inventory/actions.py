"""Guarded actions on inventory: post a correction for a drifting item (runbook 000)."""

from __future__ import annotations

from typing import Any

from flask import url_for
from sqlalchemy.orm import Session
from wtforms import IntegerField
from wtforms.validators import InputRequired, NumberRange

from console.actions.framework import (
    Action,
    ActionContext,
    ActionError,
    ActionForm,
    Outcome,
    declare,
    loader,
)
from console.inventory.models import InventoryItem
from console.inventory.services import correction_result, drift_facts, post_correction
from console.security.permissions import Permission

load_item = loader(InventoryItem, InventoryItem.sku)
MAX_CORRECTION = 1_000_000


def signed(n: int) -> str:
    return f"+{n}" if n > 0 else str(n)


def item_snapshot(item: InventoryItem) -> dict[str, Any]:
    return {
        "stock_count": item.stock_count,
        "ledger_total": item.ledger_total,
        "drift": item.stock_count - item.ledger_total,
    }


def item_url(item: InventoryItem) -> str:
    return url_for("inventory.item", sku=item.sku)


def item_row(item: InventoryItem) -> tuple[str, str, dict[str, Any]]:
    """The drift-queue row of this item, for an htmx swap after the correction."""
    from sqlalchemy.orm import object_session

    s = object_session(item)
    assert s is not None
    return "inventory/drift.html", "row", {"item": item, "facts": drift_facts(s, [item.sku])}


class CorrectionForm(ActionForm):
    quantity = IntegerField(
        "Correction entry quantity (signed: +5 adds to the ledger, -3 takes away)",
        validators=[
            InputRequired("Enter the quantity of the correction entry."),
            NumberRange(
                min=-MAX_CORRECTION,
                max=MAX_CORRECTION,
                message=f"At most {MAX_CORRECTION:,} either way.",
            ),
        ],
    )


def _params(form: ActionForm) -> dict[str, Any]:
    value = form.data.get("quantity")
    return {} if value is None else {"quantity": int(value)}


def _prefill(item: InventoryItem, form: ActionForm) -> None:
    form.quantity.data = item.stock_count - item.ledger_total


def _precondition(item: InventoryItem) -> str | None:
    if item.stock_count == item.ledger_total:
        return f"the stock count of {item.sku} already matches its ledger ({item.ledger_total})."
    return None


def _describe(item: InventoryItem) -> list[tuple[str, str]]:
    drift = item.stock_count - item.ledger_total
    return [
        ("Item", f"{item.sku} {item.name}".strip()),
        ("Stock count", str(item.stock_count)),
        ("Ledger sum", str(item.ledger_total)),
        ("Difference", f"{signed(drift)} (stock minus ledger)"),
        (
            "Effect",
            "Adds one ledger entry (reason manual_correction, referencing you) with the quantity "
            "you enter, and sets the stock count to the new ledger sum, in one transaction. "
            f"The default, {signed(drift)}, records what the ledger is missing and keeps the "
            "stock count; another amount (a physical count) moves the stock count too.",
        ),
    ]


def _preview(_s: Session, item: InventoryItem, params: dict[str, Any]) -> list[tuple[str, str]]:
    quantity = params.get("quantity")
    if quantity is None:
        return [("Result", "enter a quantity to see the resulting count")]
    ledger_after, stock_after = correction_result(item, int(quantity))
    lines = [
        ("Ledger entry", f"{signed(int(quantity))} manual_correction"),
        ("Ledger sum", f"{item.ledger_total} → {ledger_after}"),
        ("Stock count", f"{item.stock_count} → {stock_after}"),
        ("Difference", f"{signed(item.stock_count - item.ledger_total)} → 0"),
    ]
    if stock_after < 0:
        lines.append(("Refused", "the stock count cannot go below zero"))
    return lines


def _effect(ctx: ActionContext, item: InventoryItem) -> Outcome:
    quantity = int(ctx.params.get("quantity") or 0)
    if quantity == 0:
        raise ActionError("A correction of 0 changes nothing; enter the quantity to post.")
    _, stock_after = correction_result(item, quantity)
    if stock_after < 0:
        raise ActionError(
            f"The stock count would become {stock_after}: a count cannot go below zero."
        )
    before = item_snapshot(item)
    entry = post_correction(ctx.session, item, quantity, reference_id=ctx.user.sub)
    return Outcome(
        f"Correction posted for {item.sku}: ledger entry {signed(quantity)} "
        f"(#{entry.id}); stock {before['stock_count']} → {item.stock_count}, "
        f"ledger {before['ledger_total']} → {item.ledger_total}.",
        {
            "ledger_entry_id": entry.id,
            "quantity_change": quantity,
            "reason_code": entry.reason.value,
            "reference_id": entry.reference_id,
        },
    )


post_stock_correction = declare(
    Action[InventoryItem](
        name="inventory:stock:correct",
        label="Post correction",
        permission=Permission.INVENTORY_STOCK_CORRECT,
        target_type="inventory_item",
        load=load_item,
        precondition=_precondition,
        describe=_describe,
        effect=_effect,
        snapshot=item_snapshot,
        return_url=item_url,
        form=CorrectionForm,
        params=_params,
        prefill=_prefill,
        preview=_preview,
        seen=lambda item: {"stock_count": item.stock_count, "ledger_total": item.ledger_total},
        row=item_row,
        reason_help="Why stock and ledger differ, and how you checked (e.g. a shelf count).",
    )
)
