"""Invoices and their transmission log (runbooks 000 and 002)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from console.db import Base, utcnow


class InvoiceStatus(enum.StrEnum):
    DRAFT = "draft"
    GENERATED = "generated"
    TRANSMITTED = "transmitted"
    FAILED = "failed"
    VOID = "void"


class Invoice(Base):
    __tablename__ = "invoices"
    __table_args__ = (
        Index(
            "ix_invoices_attention",
            "updated_at",
            "id",
            postgresql_where=text("status IN ('draft', 'generated', 'failed')"),
        ),
        Index(
            "ix_invoices_due",
            "next_attempt_at",
            "id",
            postgresql_where=text(
                "status IN ('draft', 'generated') AND next_attempt_at IS NOT NULL"
            ),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(64), unique=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[InvoiceStatus] = mapped_column(default=InvoiceStatus.DRAFT)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    external_ref: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The shop's own version of this record (ingest API): older updates are refused as stale.
    shop_updated_at: Mapped[datetime | None]
    shop_version: Mapped[int | None] = mapped_column(BigInteger)

    transmissions: Mapped[list[InvoiceTransmission]] = relationship(
        back_populates="invoice", order_by="InvoiceTransmission.id"
    )


class InvoiceTransmission(Base):
    """One attempt to transmit an invoice, with the provider's error payload."""

    __tablename__ = "invoice_transmissions"

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"), index=True)
    attempt: Mapped[int]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    request_summary: Mapped[str] = mapped_column(Text, default="")
    response_status: Mapped[int | None]
    succeeded: Mapped[bool] = mapped_column(default=False)
    error_payload: Mapped[dict[str, Any] | None]
    # The shop's id of a transmission it reported through the ingest API; ours have none.
    external_id: Mapped[str | None] = mapped_column(String(64), unique=True)

    invoice: Mapped[Invoice] = relationship(back_populates="transmissions")
