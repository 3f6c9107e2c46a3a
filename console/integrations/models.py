"""The shop connection: API keys in, webhook endpoints and the event outbox out."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from console.db import Base, utcnow


class ApiKey(Base):
    """A shop's key for `/api/v1`; only a SHA-256 of the secret is kept.

    A rotated key keeps working until `expires_at` (the overlap window); a
    revoked key stops at once.
    """

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_created_id", "created_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    shop: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_sub: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    revoked_by_sub: Mapped[str | None] = mapped_column(String(255))
    last_used_at: Mapped[datetime | None]
    rotated_from_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))


class WebhookEndpoint(Base):
    """Where the shop receives the console's events; secrets kept encrypted.

    During a secret rotation events are signed with both the new and the
    previous secret until `previous_secret_expires_at`.
    """

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(255), default="")
    event_types: Mapped[list[str]] = mapped_column(default=list)
    """Empty: every event type."""
    enabled: Mapped[bool] = mapped_column(default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    secret_enc: Mapped[str] = mapped_column(Text)
    previous_secret_enc: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_sub: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OutboxEvent(Base):
    """An event about a record the shop owns, written in the transaction that changed it."""

    __tablename__ = "outbox_events"
    __table_args__ = (
        Index("ix_outbox_events_record", "record_kind", "record_id", "record_seq", unique=True),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    record_kind: Mapped[str] = mapped_column(String(32))
    record_id: Mapped[str] = mapped_column(String(64))
    record_seq: Mapped[int] = mapped_column(BigInteger)
    """Per record, 1, 2, 3...: the shop ignores an event older than one it applied."""
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actor: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reason: Mapped[str | None] = mapped_column(Text)
    audit_seq: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RecordSequence(Base):
    """The last event sequence number of each record (upserted atomically)."""

    __tablename__ = "record_sequences"

    record_kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    record_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class EventDelivery(Base):
    """One event to one endpoint: retried with backoff until it succeeds or its time is up."""

    __tablename__ = "event_deliveries"
    __table_args__ = (
        Index("ix_event_deliveries_created_id", "created_at", "id"),
        Index(
            "ix_event_deliveries_due",
            "next_attempt_at",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "ix_event_deliveries_failed",
            "created_at",
            "id",
            postgresql_where=text("status = 'failed'"),
        ),
        Index("ix_event_deliveries_endpoint_id", "endpoint_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_pk: Mapped[int] = mapped_column(ForeignKey("outbox_events.id"), index=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id"))
    status: Mapped[DeliveryStatus] = mapped_column(default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    last_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None]
    last_response_excerpt: Mapped[str | None] = mapped_column(String(300))
    last_error: Mapped[str | None] = mapped_column(Text)
    succeeded_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    event: Mapped[OutboxEvent] = relationship()
    endpoint: Mapped[WebhookEndpoint] = relationship()
