"""Suppliers, their catalogue syncs and the products they sync (runbook 001)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from console.db import Base, utcnow


class Supplier(Base):
    __tablename__ = "suppliers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SyncStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class SupplierSyncRun(Base):
    """One catalogue sync of one supplier, page by page.

    A failed run records the page it stopped at; a retry is a new run that
    starts there (`resumed_from_id`). A failed run stays open until a later
    run takes over its work (`superseded_by_id`): its retry, or the next full
    sync of the same supplier.
    """

    __tablename__ = "supplier_sync_runs"
    __table_args__ = (
        Index("ix_supplier_sync_runs_started_id", "started_at", "id"),
        # The failed runs nobody has taken over yet (/suppliers, dashboard).
        Index(
            "ix_supplier_sync_runs_open_failed",
            "started_at",
            "id",
            postgresql_where=text("status = 'failed' AND superseded_by_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    supplier_id: Mapped[int] = mapped_column(ForeignKey("suppliers.id"), index=True)
    status: Mapped[SyncStatus]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    items_synced: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    start_page: Mapped[int] = mapped_column(default=1, server_default=text("1"))
    pages_done: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    """The last page stored; the next to fetch is pages_done + 1."""
    pages_total: Mapped[int | None]
    failed_page: Mapped[int | None]
    retryable: Mapped[bool | None]
    catalog_version: Mapped[str | None] = mapped_column(String(64))
    started_by: Mapped[str | None] = mapped_column(String(255))
    resumed_from_id: Mapped[int | None] = mapped_column(ForeignKey("supplier_sync_runs.id"))
    superseded_by_id: Mapped[int | None] = mapped_column(ForeignKey("supplier_sync_runs.id"))
    superseded_at: Mapped[datetime | None]
    # The shop's id of the run (ingest API); runs made here have none.
    external_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    # The shop's own version of this record (ingest API): older updates are refused as stale.
    shop_updated_at: Mapped[datetime | None]
    shop_version: Mapped[int | None] = mapped_column(BigInteger)

    @property
    def next_page(self) -> int:
        return self.pages_done + 1

    @property
    def open(self) -> bool:
        return self.status == SyncStatus.FAILED and self.superseded_by_id is None


class SupplierProduct(Base):
    """A product as its supplier last listed it (written by the catalogue sync)."""

    __tablename__ = "supplier_products"
    __table_args__ = (UniqueConstraint("supplier_id", "sku"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    supplier_id: Mapped[int] = mapped_column(ForeignKey("suppliers.id"))
    sku: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255), default="")
    available: Mapped[int] = mapped_column(default=0)
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)
    sync_run_id: Mapped[int | None] = mapped_column(ForeignKey("supplier_sync_runs.id"))
