"""Inventory drift (runbook 000): find it, explain it, correct it through the ledger.

`stock_count` should equal the sum of the item's ledger; `ledger_total`
holds that sum (kept by a trigger, see the model). A correction is always a
ledger entry (`manual_correction`, referencing the acting admin) and the
stock count it implies, written in one transaction: never an overwrite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, Select, String, cast, func, select, true
from sqlalchemy.orm import Session

from console.db import one_of
from console.inventory.models import (
    InventoryItem,
    InventoryLedgerEntry,
    InventoryReservation,
    LedgerReason,
    ReservationStatus,
)

RECENT_ENTRIES = 3


def drift_condition() -> Any:
    """Stock and ledger disagree (index ix_inventory_items_drift)."""
    return InventoryItem.stock_count != InventoryItem.ledger_total


def drift_statement(sku: str = "", min_drift: int | None = None) -> Select[Any]:
    stmt = select(InventoryItem).where(drift_condition())
    sku = sku.strip().upper()
    if sku:
        stmt = stmt.where(func.upper(InventoryItem.sku).startswith(sku, autoescape=True))
    if min_drift is not None and min_drift > 1:
        stmt = stmt.where(InventoryItem.drift_size >= min_drift)
    return stmt


def drift_count_statement() -> Select[Any]:
    return select(func.count(InventoryItem.id)).where(drift_condition())


@dataclass
class Pending:
    units: int = 0
    reservations: int = 0


@dataclass
class DriftFacts:
    """What explains a page of drifting items: pending reservations, recent ledger rows."""

    pending: dict[str, Pending] = field(default_factory=dict)
    recent: dict[str, list[InventoryLedgerEntry]] = field(default_factory=dict)


def drift_facts(s: Session, skus: Sequence[str], recent: int = RECENT_ENTRIES) -> DriftFacts:
    """Two queries for the whole page, whatever its size."""
    facts = DriftFacts()
    if not skus:
        return facts
    for sku, units, n in s.execute(
        select(
            InventoryReservation.sku,
            func.coalesce(func.sum(InventoryReservation.quantity), 0),
            func.count(InventoryReservation.id),
        )
        .where(
            one_of(InventoryReservation.sku, skus),
            InventoryReservation.status == ReservationStatus.RESERVED,
        )
        .group_by(InventoryReservation.sku)
    ):
        facts.pending[sku] = Pending(int(units), int(n))
    if recent <= 0:
        return facts
    # The newest entries of each SKU: one descent of ix_inventory_ledger_sku_id per SKU
    # (LATERAL ... LIMIT), where a window over the SKUs' whole ledgers reads all their rows.
    skus_table = (
        func.unnest(cast(list(skus), ARRAY(String))).table_valued("sku").render_derived("s")
    )
    newest = (
        select(InventoryLedgerEntry.id)
        .where(InventoryLedgerEntry.sku == skus_table.c.sku)
        .order_by(InventoryLedgerEntry.id.desc())
        .limit(recent)
        .lateral("newest")
    )
    ids = select(newest.c.id).select_from(skus_table).join(newest, true())
    for entry in s.scalars(
        select(InventoryLedgerEntry)
        .where(InventoryLedgerEntry.id.in_(ids))
        .order_by(InventoryLedgerEntry.sku, InventoryLedgerEntry.id.desc())
    ):
        facts.recent.setdefault(entry.sku, []).append(entry)
    return facts


def correction_result(item: InventoryItem, quantity: int) -> tuple[int, int]:
    """(ledger total, stock count) after a correction entry of `quantity`.

    The entry is added to the ledger and the stock count becomes the new
    ledger total: the default quantity (the drift) keeps the stock count
    and completes the ledger; another amount (a physical count) moves both.
    """
    ledger_after = item.ledger_total + quantity
    return ledger_after, ledger_after


def post_correction(
    s: Session, item: InventoryItem, quantity: int, *, reference_id: str
) -> InventoryLedgerEntry:
    """Add the correction entry and the stock count it implies; the caller locks and commits."""
    ledger_after, stock_after = correction_result(item, quantity)
    if stock_after < 0:
        raise ValueError(f"the stock count would become {stock_after}")
    entry = InventoryLedgerEntry(
        sku=item.sku,
        quantity_change=quantity,
        reason=LedgerReason.MANUAL_CORRECTION,
        reference_id=reference_id[:255],
    )
    s.add(entry)
    item.stock_count = stock_after
    s.flush()
    s.refresh(item)  # ledger_total and drift_since come from the triggers
    if item.ledger_total != ledger_after or item.stock_count != item.ledger_total:
        raise RuntimeError(
            f"{item.sku}: ledger total {item.ledger_total} and stock {item.stock_count} "
            f"disagree after the correction (expected {ledger_after})"
        )
    return entry


@dataclass
class DriftLine:
    sku: str
    stock_count: int
    ledger_total: int
    drift: int
    since: datetime | None
    pending_units: int


@dataclass
class DriftReport:
    scanned: int = 0
    acted: int = 0
    errors: int = 0
    last_error: str | None = None
    items: list[DriftLine] = field(default_factory=list)


def inventory_drift(s: Session, *, dry_run: bool = False, limit: int = 1000) -> DriftReport:
    """Every drifting item, oldest drift first (read-only: `dry_run` changes nothing)."""
    items = s.scalars(
        select(InventoryItem)
        .where(drift_condition())
        .order_by(InventoryItem.drift_since, InventoryItem.id)
        .limit(limit)
    ).all()
    facts = drift_facts(s, [i.sku for i in items], recent=0)
    report = DriftReport(scanned=len(items))
    for item in items:
        report.items.append(
            DriftLine(
                item.sku,
                item.stock_count,
                item.ledger_total,
                item.drift,
                item.drift_since,
                facts.pending.get(item.sku, Pending()).units,
            )
        )
    s.rollback()
    return report
