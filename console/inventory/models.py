"""Stock, its ledger and checkout reservations (runbook 000)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from console.db import Base, utcnow


class InventoryItem(Base):
    """A SKU; `stock_count` must equal the sum of its ledger (drift otherwise)."""

    __tablename__ = "inventory_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    stock_count: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The shop's own version of this record (ingest API): older updates are refused as stale.
    shop_updated_at: Mapped[datetime | None]
    shop_version: Mapped[int | None] = mapped_column(BigInteger)


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
            sqlite_where=text("status = 'reserved'"),
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
