"""Coupon reservation expiry (runbook 002: reservation leaks)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from console.coupons.models import Coupon, CouponReservation, CouponReservationStatus
from console.db import utcnow


@dataclass
class ExpiryReport:
    scanned: int = 0
    expired: int = 0


def expire_reservations(s: Session, *, dry_run: bool = False) -> ExpiryReport:
    """Expire reservations past `expires_at` and give the coupon its count back.

    Row by row with SKIP LOCKED, so two runs at once expire each one once.
    """
    report = ExpiryReport()
    ids = list(
        s.scalars(
            select(CouponReservation.id).where(
                CouponReservation.status == CouponReservationStatus.RESERVED,
                CouponReservation.expires_at < utcnow(),
            )
        )
    )
    s.rollback()
    for reservation_id in ids:
        reservation = s.scalar(
            select(CouponReservation)
            .where(
                CouponReservation.id == reservation_id,
                CouponReservation.status == CouponReservationStatus.RESERVED,
            )
            .with_for_update(skip_locked=True)
        )
        if reservation is None:
            s.rollback()
            continue
        report.scanned += 1
        if dry_run:
            s.rollback()
            continue
        coupon = s.get(Coupon, reservation.coupon_id, with_for_update=True)
        reservation.status = CouponReservationStatus.EXPIRED
        if coupon is not None and coupon.reserved_count > 0:
            coupon.reserved_count -= 1
        s.commit()
        report.expired += 1
    return report
