"""Payments, Stripe webhook events and money-movement attempts."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from console.db import Base, utcnow


class PaymentStatus(enum.StrEnum):
    REQUIRES_PAYMENT_METHOD = "requires_payment_method"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"


class Payment(Base):
    """A Stripe PaymentIntent as we know it, with what we verified at Stripe."""

    __tablename__ = "payments"

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_intent_id: Mapped[str] = mapped_column(String(255), unique=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    charge_id: Mapped[str | None] = mapped_column(String(255))
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[PaymentStatus]
    amount_refunded: Mapped[int] = mapped_column(default=0)
    verified_amount: Mapped[int | None]
    verified_currency: Mapped[str | None] = mapped_column(String(3))
    verified_at: Mapped[datetime | None]
    failure_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WebhookStatus(enum.StrEnum):
    RECEIVED = "received"  # stored and queued: a worker processes it
    PROCESSED = "processed"
    FAILED = "failed"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"


class WebhookEvent(Base):
    """A verified Stripe event, raw body kept verbatim; the event id is unique."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        Index("ix_webhook_events_received_id", "received_at", "id"),
        Index(
            "ix_webhook_events_unprocessed",
            "received_at",
            "id",
            postgresql_where=text("processed_at IS NULL AND status IN ('received', 'failed')"),
        ),
        # What workers claim (migration 0008): only the events still waiting.
        Index(
            "ix_webhook_events_queued",
            "id",
            postgresql_where=text("status = 'received' AND processed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(128), index=True)
    api_version: Mapped[str | None] = mapped_column(String(32))
    livemode: Mapped[bool] = mapped_column(default=False)
    object_id: Mapped[str | None] = mapped_column(String(255), index=True)
    raw_body: Mapped[str] = mapped_column(Text)
    status: Mapped[WebhookStatus] = mapped_column(default=WebhookStatus.RECEIVED)
    attempts: Mapped[int] = mapped_column(default=0)
    deliveries: Mapped[int] = mapped_column(default=1)
    last_error: Mapped[str | None] = mapped_column(Text)
    stripe_created_at: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]


class WebhookRejection(Base):
    """A delivery refused before processing (bad signature, bad body)."""

    __tablename__ = "webhook_rejections"
    __table_args__ = (Index("ix_webhook_rejections_received_id", "received_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    reason: Mapped[str] = mapped_column(String(255))
    source_ip: Mapped[str | None] = mapped_column(String(64))
    body_sha256: Mapped[str] = mapped_column(String(64))
    body_size: Mapped[int]
    claimed_event_id: Mapped[str | None] = mapped_column(String(255))


class MovementKind(enum.StrEnum):
    TRANSFER = "transfer"
    REFUND = "refund"


class MovementStatus(enum.StrEnum):
    IN_FLIGHT = "in_flight"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class MoneyMovement(Base):
    """One attempt to move money at Stripe, committed before the call.

    A crash between Stripe's success and our commit leaves it `in_flight`;
    `payouts resume` re-issues the same idempotency key to finish it.
    """

    __tablename__ = "money_movements"
    __table_args__ = (
        Index(
            "ix_money_movements_in_flight",
            "created_at",
            "id",
            postgresql_where=text("status = 'in_flight'"),
        ),
        Index("ix_money_movements_target", "target_type", "target_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[MovementKind]
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(String(64))
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[MovementStatus] = mapped_column(default=MovementStatus.IN_FLIGHT)
    stripe_object_id: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    calls: Mapped[int] = mapped_column(default=0)
    actor_sub: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
