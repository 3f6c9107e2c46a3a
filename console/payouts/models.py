"""Sellers, their payouts and four-eyes release approvals (runbook 003)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from console.db import Base, utcnow


class Seller(Base):
    __tablename__ = "sellers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    stripe_account_id: Mapped[str] = mapped_column(String(255), index=True)
    transfers_enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PayoutStatus(enum.StrEnum):
    HELD = "held"
    ELIGIBLE = "eligible"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    RELEASED = "released"
    FAILED = "failed"


class DisputeStatus(enum.StrEnum):
    NONE = "none"
    OPEN = "open"
    WON = "won"
    LOST = "lost"


# The release candidates, as the partial indexes state them (and `ready_condition`
# must, for PostgreSQL to prove it implies them).
RELEASE_CANDIDATE = "status IN ('held', 'eligible') AND NOT admin_hold AND dispute_status <> 'open'"


class SellerPayout(Base):
    """Seller funds held until the protection window ends and delivery is confirmed."""

    __tablename__ = "seller_payouts"
    __table_args__ = (
        Index(
            "ix_seller_payouts_ready",
            "protection_ends_at",
            "id",
            postgresql_where=text(RELEASE_CANDIDATE),
        ),
        # The ready page's default order (oldest first): it walks the candidates in
        # page order and stops at a page, instead of sorting the whole queue (0011).
        Index(
            "ix_seller_payouts_ready_created",
            "created_at",
            "id",
            postgresql_where=text(RELEASE_CANDIDATE),
        ),
        Index("ix_seller_payouts_status_id", "status", "id"),
        # The dashboard's "ready to release" count as an index-only scan: the
        # release candidates with what the rest of `ready_condition` reads
        # (migration 0010; a heap visit per candidate before, 3 ms at 100k payouts).
        Index(
            "ix_seller_payouts_ready_count",
            "seller_id",
            "id",
            postgresql_include=["protected", "protection_ends_at", "delivery_confirmed_at"],
            postgresql_where=text(RELEASE_CANDIDATE),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(64), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    seller_id: Mapped[int] = mapped_column(ForeignKey("sellers.id"), index=True)
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    destination_account: Mapped[str] = mapped_column(String(255))
    status: Mapped[PayoutStatus] = mapped_column(default=PayoutStatus.HELD)
    protected: Mapped[bool] = mapped_column(default=True)
    admin_hold: Mapped[bool] = mapped_column(default=False)
    hold_reason: Mapped[str | None] = mapped_column(Text)
    dispute_status: Mapped[DisputeStatus] = mapped_column(default=DisputeStatus.NONE)
    dispute_opened_at: Mapped[datetime | None]
    protection_ends_at: Mapped[datetime | None]
    delivery_confirmed_at: Mapped[datetime | None]
    stripe_transfer_id: Mapped[str | None] = mapped_column(String(255))
    released_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The shop's own version of this record (ingest API): older updates are refused as stale.
    shop_updated_at: Mapped[datetime | None]
    shop_version: Mapped[int | None] = mapped_column(BigInteger)

    seller: Mapped[Seller] = relationship()


class ApprovalStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    VOIDED = "voided"
    EXECUTED = "executed"


class Approval(Base):
    """A release request bound to a hash of its exact payload (four eyes)."""

    __tablename__ = "approvals"
    __table_args__ = (
        Index(
            "ix_approvals_pending",
            "requested_at",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), default="payout_release")
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    payload_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[ApprovalStatus] = mapped_column(default=ApprovalStatus.PENDING)
    requested_by_sub: Mapped[str] = mapped_column(String(255))
    requested_by_email: Mapped[str] = mapped_column(String(320), default="")
    request_reason: Mapped[str] = mapped_column(Text, default="")
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_by_sub: Mapped[str | None] = mapped_column(String(255))
    decided_at: Mapped[datetime | None]
    decision_reason: Mapped[str | None] = mapped_column(Text)

    items: Mapped[list[ApprovalItem]] = relationship(
        back_populates="approval", order_by="ApprovalItem.id"
    )


class ApprovalItem(Base):
    __tablename__ = "approval_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    approval_id: Mapped[int] = mapped_column(ForeignKey("approvals.id"), index=True)
    payout_id: Mapped[int] = mapped_column(ForeignKey("seller_payouts.id"), index=True)
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    destination_account: Mapped[str] = mapped_column(String(255))
    result: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str | None] = mapped_column(Text)

    approval: Mapped[Approval] = relationship(back_populates="items")
