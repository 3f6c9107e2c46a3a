"""The append-only, hash-chained audit log."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Index, Interval, String, Text, literal_column, text
from sqlalchemy.orm import Mapped, mapped_column

from console.db import Base


class AuditEntry(Base):
    """One audited event; `canonical` holds the exact bytes that were hashed.

    The filterable columns duplicate fields of `canonical` so lists can use
    indexes; export and verify read `canonical` and `hash` only.
    """

    __tablename__ = "audit_entries"
    __table_args__ = (
        Index("ix_audit_entries_actor_seq", "actor_sub", "seq"),
        # The actor filter matches the e-mail or the subject: a BitmapOr of the two.
        Index("ix_audit_entries_actor_email_seq", "actor_email", "seq"),
        Index("ix_audit_entries_action_seq", "action", "seq"),
        Index("ix_audit_entries_target_seq", "target_type", "target_id", "seq"),
        Index("ix_audit_entries_outcome_seq", "outcome", "seq"),
        Index("ix_audit_entries_ts", "ts"),
        # The other records an action changed (history_for), migration 0009.
        Index(
            "ix_audit_entries_records",
            literal_column("((details -> 'extra') -> 'records')").label("records"),
            postgresql_using="gin",
            postgresql_ops={"records": "jsonb_path_ops"},
        ),
        # A time window's first and last seq (the list is in seq order, ts nearly so).
        Index("ix_audit_entries_ts_seq", "ts", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ts: Mapped[datetime]
    actor_sub: Mapped[str | None] = mapped_column(String(255))
    actor_email: Mapped[str | None] = mapped_column(String(320))
    actor_roles: Mapped[list[str]] = mapped_column(default=list)
    action: Mapped[str] = mapped_column(String(128))
    target_type: Mapped[str | None] = mapped_column(String(64))
    target_id: Mapped[str | None] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    ticket: Mapped[str | None] = mapped_column(String(128))
    request_id: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    canonical: Mapped[str] = mapped_column(Text)


class AuditChainHead(Base):
    """The single row that serializes appends: lock it, extend, move it."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))
    # Moved by the append trigger (migration 0012): the latest entry time, and the most
    # an entry's time was earlier than one before it in seq order. Time windows use it.
    max_ts: Mapped[datetime | None]
    max_disorder: Mapped[timedelta] = mapped_column(Interval, server_default=text("interval '0'"))


class AuditCheckpoint(Base):
    """A signed record of a retention purge, so later exports still verify."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime]
    purged_through_seq: Mapped[int] = mapped_column(BigInteger)
    purged_through_hash: Mapped[str] = mapped_column(String(64))
    purged_count: Mapped[int] = mapped_column(BigInteger)
    statement: Mapped[str] = mapped_column(Text)
    signature: Mapped[str | None] = mapped_column(Text)
