"""Orders, their lines and notes (runbooks 000-004)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from console.db import Base, utcnow


class OrderStatus(enum.StrEnum):
    PENDING = "pending"
    PAID = "paid"
    CONFIRMED = "confirmed"
    PROCESSING = "processing"
    FULFILLED = "fulfilled"
    DELIVERED = "delivered"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


# The stuck reasons as SQL on `orders` alone, for the partial indexes (migration 0007).
# The webhook reason without its grace window (a time the index cannot hold); the
# queries in console/orders/queries.py state the same predicates with SQLAlchemy and
# tests/orders/test_stuck_counts.py checks the two agree.
_STUCK_REASON_TEMPLATES = {
    "amount_mismatch": "{o}amount_mismatch AND {o}status NOT IN ('refunded', 'cancelled')",
    "webhook_unprocessed": "{o}status = 'paid' AND {o}webhook_processed_at IS NULL",
    "reservation_unconfirmed": "{o}status IN ('paid', 'confirmed') AND {o}holds_stock",
    "not_forwarded": "{o}status = 'processing' AND {o}supplier_forwarded_at IS NULL",
    "payment_pending_order": "{o}status = 'pending' AND {o}payment_succeeded",
}


def stuck_sql(reason: str | None = None, *, qualified: bool = False) -> str:
    """A reason's index predicate (or their OR), as the index has it or qualified by table."""
    prefix = "orders." if qualified else ""
    if reason is not None:
        return _STUCK_REASON_TEMPLATES[reason].format(o=prefix)
    return " OR ".join(f"({t.format(o=prefix)})" for t in _STUCK_REASON_TEMPLATES.values())


STUCK_REASON_SQL = {key: stuck_sql(key) for key in _STUCK_REASON_TEMPLATES}
STUCK_ANY_SQL = stuck_sql()


class Order(Base):
    """An order of the shop; `confirmed`, not `paid`, is the finalization state."""

    __tablename__ = "orders"
    __table_args__ = (
        # Keyset pagination over all orders.
        Index("ix_orders_created_id", "created_at", "id"),
        # Stuck: paid and its webhook not processed (runbook 002).
        Index(
            "ix_orders_stuck_unprocessed",
            "paid_at",
            "id",
            postgresql_where=text("status = 'paid' AND webhook_processed_at IS NULL"),
        ),
        # Stuck: processing but never forwarded to the supplier (runbook 001).
        Index(
            "ix_orders_stuck_processing",
            "updated_at",
            "id",
            postgresql_where=text("status = 'processing' AND supplier_forwarded_at IS NULL"),
        ),
        # Stuck: amount or currency mismatch, possible fraud (runbook 002).
        Index(
            "ix_orders_amount_mismatch",
            "updated_at",
            "id",
            postgresql_where=text("amount_mismatch"),
        ),
        # The stuck queue (migration 0007): the union of the reasons, once per sort of the
        # page, and each reason by age, so every page and every count is a bounded scan.
        *[
            Index(f"ix_orders_stuck_{key}", column, "id", postgresql_where=text(STUCK_ANY_SQL))
            for key, column in (
                ("created", "created_at"),
                ("amount", "amount"),
                ("updated", "updated_at"),
            )
        ],
        *[
            Index(f"ix_orders_stuck_{key}_created", "created_at", "id", postgresql_where=text(sql))
            for key, sql in STUCK_REASON_SQL.items()
        ],
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[OrderStatus] = mapped_column(default=OrderStatus.PENDING)
    customer_email: Mapped[str] = mapped_column(String(320), index=True)
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    amount_refunded: Mapped[int] = mapped_column(default=0)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), index=True)
    checkout_session_id: Mapped[str | None] = mapped_column(String(255), index=True)
    listing_id: Mapped[str | None] = mapped_column(String(64), index=True)
    seller_email: Mapped[str | None] = mapped_column(String(320))
    amount_mismatch: Mapped[bool] = mapped_column(default=False)
    paid_at: Mapped[datetime | None]
    confirmed_at: Mapped[datetime | None]
    webhook_processed_at: Mapped[datetime | None]
    supplier_id: Mapped[int | None] = mapped_column(ForeignKey("suppliers.id"))
    supplier_forwarded_at: Mapped[datetime | None]
    supplier_order_ref: Mapped[str | None] = mapped_column(String(128))
    stripe_transfer_id: Mapped[str | None] = mapped_column(String(255))
    completed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The shop's own version of this record (ingest API): older updates are refused as stale.
    shop_updated_at: Mapped[datetime | None]
    shop_version: Mapped[int | None] = mapped_column(BigInteger)
    # Facts about the order's children, kept by PostgreSQL triggers (migration 0007) whoever
    # writes, so that every stuck reason is a predicate on `orders` alone (see
    # console/orders/queries.py): an inventory reservation still `reserved`, a payment that
    # `succeeded`. Read only by SQL; the console never writes them.
    holds_stock: Mapped[bool] = mapped_column(server_default=text("false"))
    payment_succeeded: Mapped[bool] = mapped_column(server_default=text("false"))

    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="OrderLine.id"
    )
    notes: Mapped[list[OrderNote]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="OrderNote.id"
    )


class OrderLine(Base):
    __tablename__ = "order_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    sku: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int]
    unit_amount: Mapped[int]

    order: Mapped[Order] = relationship(back_populates="lines")


class OrderNote(Base):
    """An internal note; manual edits are recorded here (runbook 002)."""

    __tablename__ = "order_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    author_sub: Mapped[str] = mapped_column(String(255))
    author_email: Mapped[str] = mapped_column(String(320), default="")
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    order: Mapped[Order] = relationship(back_populates="notes")
