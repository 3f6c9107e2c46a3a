"""Stock, its ledger and checkout reservations (runbook 000)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, FetchedValue, ForeignKey, Index, String, func, text
from sqlalchemy.orm import Mapped, column_property, mapped_column

from console.db import Base, utcnow


class InventoryItem(Base):
    """A SKU; `stock_count` must equal the sum of its ledger (drift otherwise).

    `ledger_total` and `drift_since` are kept by PostgreSQL triggers
    (migration 0004), whoever writes: every ledger insert adds to the total,
    and nothing else may change it; `drift_since` is when the two numbers
    last started to differ. So the drift queue is a partial-index scan, not
    a SUM over the whole ledger.
    """

    __tablename__ = "inventory_items"
    __table_args__ = (
        Index(
            "ix_inventory_items_drift",
            "drift_since",
            "id",
            postgresql_where=text("stock_count <> ledger_total"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    stock_count: Mapped[int] = mapped_column(default=0)
    ledger_total: Mapped[int] = mapped_column(
        server_default=text("0"), server_onupdate=FetchedValue()
    )
    drift_since: Mapped[datetime | None] = mapped_column(
        server_default=FetchedValue(), server_onupdate=FetchedValue()
    )
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The shop's own version of this record (ingest API): older updates are refused as stale.
    shop_updated_at: Mapped[datetime | None]
    shop_version: Mapped[int | None] = mapped_column(BigInteger)

    drift: Mapped[int] = column_property(stock_count - ledger_total)
    """stock_count minus the ledger sum: positive when stock shows more than the ledger."""
    drift_size: Mapped[int] = column_property(func.abs(stock_count - ledger_total))


class LedgerReason(enum.StrEnum):
    RESTOCK = "restock"
    SALE = "sale"
    RETURN = "return"
    MANUAL_CORRECTION = "manual_correction"


class InventoryLedgerEntry(Base):
    """An append-only stock change; corrections are entries, never overwrites."""

    __tablename__ = "inventory_ledger"
    __table_args__ = (Index("ix_inventory_ledger_sku_id", "sku", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(ForeignKey("inventory_items.sku"))
    quantity_change: Mapped[int]
    reason: Mapped[LedgerReason]
    reference_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The shop's id of a movement pushed through the ingest API (movements are immutable).
    external_id: Mapped[str | None] = mapped_column(String(64), unique=True)


class ReservationStatus(enum.StrEnum):
    RESERVED = "reserved"
    CONFIRMED = "confirmed"
    RELEASED = "released"
    EXPIRED = "expired"


class InventoryReservation(Base):
    """Stock held at checkout, confirmed on payment."""

    __tablename__ = "inventory_reservations"
    __table_args__ = (
        Index(
            "ix_inventory_reservations_unconfirmed",
            "order_id",
            postgresql_where=text("status = 'reserved'"),
        ),
        # The pending reservations of the SKUs on a drift page, in one query.
        Index(
            "ix_inventory_reservations_pending_sku",
            "sku",
            postgresql_where=text("status = 'reserved'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(64), unique=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    sku: Mapped[str] = mapped_column(ForeignKey("inventory_items.sku"))
    quantity: Mapped[int]
    status: Mapped[ReservationStatus] = mapped_column(default=ReservationStatus.RESERVED)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    confirmed_at: Mapped[datetime | None]
    # The shop's own version of this record (ingest API): older updates are refused as stale.
    shop_updated_at: Mapped[datetime | None]
    shop_version: Mapped[int | None] = mapped_column(BigInteger)
