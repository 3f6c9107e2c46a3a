"""Idempotency records: a repeated submit returns the first result."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from console.db import Base, utcnow


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"
    __table_args__ = (
        Index(
            "ix_idempotency_records_repeat",
            "actor_sub",
            "fingerprint",
            "created_at",
            postgresql_where=text("fingerprint IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(128), unique=True)
    action: Mapped[str] = mapped_column(String(128))
    target_id: Mapped[str] = mapped_column(String(128))
    actor_sub: Mapped[str] = mapped_column(String(255))
    outcome: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(String(1000), default="")
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    audit_seq: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    """SHA-256 of action, target, parameters, reason and ticket: a repeated submit
    of the same thing by the same person soon after is recognised as a repeat."""
