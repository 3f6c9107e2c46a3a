"""Reconciliation runs and the findings they explain (runbooks 003 and 004)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from console.db import Base, utcnow


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ReconciliationRun(Base):
    __tablename__ = "reconciliation_runs"
    __table_args__ = (Index("ix_reconciliation_runs_started_id", "started_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    filters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[RunStatus] = mapped_column(default=RunStatus.RUNNING)
    started_by_sub: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    scanned_stripe: Mapped[int] = mapped_column(default=0)
    scanned_local: Mapped[int] = mapped_column(default=0)
    stripe_calls: Mapped[int] = mapped_column(default=0)
    findings_new: Mapped[int] = mapped_column(default=0)
    findings_seen: Mapped[int] = mapped_column(default=0)
    findings_closed: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    heartbeat_at: Mapped[datetime | None]
    """Refreshed while a worker executes the run; a run silent past its lease is dead."""


class Severity(enum.StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    WARNING = "warning"


class FindingStatus(enum.StrEnum):
    OPEN = "open"
    FIXED = "fixed"
    DISMISSED = "dismissed"
    AUTO_CLOSED = "auto_closed"


class FindingType(enum.StrEnum):
    STRIPE_PAID_NO_ORDER = "stripe_paid_no_order"
    ORDER_PAID_NO_STRIPE = "order_paid_no_stripe"
    TRANSFER_ORDER_NOT_COMPLETED = "transfer_order_not_completed"
    AMOUNT_MISMATCH = "amount_mismatch"
    REFUND_NOT_REFLECTED = "refund_not_reflected"
    REFUND_MISSING_AT_STRIPE = "refund_missing_at_stripe"
    EVENT_NOT_RECEIVED = "event_not_received"


class ReconciliationFinding(Base):
    """A difference between Stripe and us; a finding seen again keeps its row."""

    __tablename__ = "reconciliation_findings"
    __table_args__ = (
        Index(
            "ix_reconciliation_findings_open",
            "severity",
            "id",
            postgresql_where=text("status = 'open'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[FindingType]
    severity: Mapped[Severity]
    status: Mapped[FindingStatus] = mapped_column(default=FindingStatus.OPEN)
    explanation: Mapped[str] = mapped_column(Text)
    suggested_action: Mapped[str | None] = mapped_column(String(64))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), index=True)
    transfer_id: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    first_seen_run_id: Mapped[int | None] = mapped_column(ForeignKey("reconciliation_runs.id"))
    last_seen_run_id: Mapped[int | None] = mapped_column(ForeignKey("reconciliation_runs.id"))
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]
    closed_by_sub: Mapped[str | None] = mapped_column(String(255))
    close_reason: Mapped[str | None] = mapped_column(Text)
    close_audit_seq: Mapped[int | None]
