"""Coupons and their reservations (runbook 002: reservation leaks)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from console.db import Base, utcnow


class Coupon(Base):
    """A coupon; `reserved_count` must equal its reservations still `reserved`."""

    __tablename__ = "coupons"
    __table_args__ = (
        # Coupons claiming holds: where a reserved count can be too high (leaks page).
        Index("ix_coupons_reserved", "code", postgresql_where=text("reserved_count > 0")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    max_redemptions: Mapped[int | None]
    redeemed_count: Mapped[int] = mapped_column(default=0)
    reserved_count: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The shop's own version of this record (ingest API): older updates are refused as stale.
    shop_updated_at: Mapped[datetime | None]
    shop_version: Mapped[int | None] = mapped_column(BigInteger)


class CouponReservationStatus(enum.StrEnum):
    RESERVED = "reserved"
    REDEEMED = "redeemed"
    EXPIRED = "expired"
    RELEASED = "released"


class CouponReservation(Base):
    """A hold on a coupon during checkout; leaks when it outlives `expires_at`."""

    __tablename__ = "coupon_reservations"
    __table_args__ = (
        Index(
            "ix_coupon_reservations_leaks",
            "expires_at",
            "id",
            postgresql_where=text("status = 'reserved'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    coupon_id: Mapped[int] = mapped_column(ForeignKey("coupons.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    status: Mapped[CouponReservationStatus] = mapped_column(
        default=CouponReservationStatus.RESERVED
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    # The shop's id of the reservation (ingest API); reservations made here have none.
    external_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    # The shop's own version of this record (ingest API): older updates are refused as stale.
    shop_updated_at: Mapped[datetime | None]
    shop_version: Mapped[int | None] = mapped_column(BigInteger)
