"""Coupon reservation expiry and count repair (runbook 002: reservation leaks)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from console.coupons.models import Coupon, CouponReservation, CouponReservationStatus
from console.coupons.queries import leak_condition
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


@dataclass
class CouponRelease:
    code: str
    released: int
    reserved_before: int
    reserved_after: int


@dataclass
class ReleaseReport:
    coupons: list[CouponRelease] = field(default_factory=list)
    skipped_coupons: list[str] = field(default_factory=list)
    """Coupons that disappeared meanwhile: their reservations stay as they are."""

    @property
    def released(self) -> int:
        return sum(c.released for c in self.coupons)


def release_expired(
    s: Session, *, coupon_id: int | None = None, now: datetime | None = None, limit: int = 5000
) -> ReleaseReport:
    """Expire the leaked reservations (of one coupon, or all) and count them back.

    No commit: the caller's action commits with its audit entry. Rows another
    transaction holds (the cron job, a person on the same coupon) are skipped,
    so each reservation is released once; coupon rows are waited for.
    """
    now = now or utcnow()
    stmt = select(CouponReservation).where(leak_condition(now))
    if coupon_id is not None:
        stmt = stmt.where(CouponReservation.coupon_id == coupon_id)
    reservations = s.scalars(
        stmt.order_by(CouponReservation.expires_at, CouponReservation.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    by_coupon: dict[int, list[CouponReservation]] = {}
    for r in reservations:
        by_coupon.setdefault(r.coupon_id, []).append(r)
    report = ReleaseReport()
    if not by_coupon:
        return report
    # Wait for the coupon rows (not SKIP LOCKED): the cron job holds one only while it
    # expires one reservation, and it skips the reservations locked here, so skipping
    # its coupon would leave those unreleased. No cycle: the job waits for a coupon
    # while holding one reservation, never for a reservation while holding a coupon.
    coupons = {
        c.id: c
        for c in s.scalars(
            select(Coupon)
            .where(Coupon.id.in_(list(by_coupon)))
            .order_by(Coupon.id)
            .with_for_update()
        )
    }
    for cid, held in by_coupon.items():
        coupon = coupons.get(cid)
        if coupon is None:
            code = s.scalar(select(Coupon.code).where(Coupon.id == cid))
            report.skipped_coupons.append(str(code))
            continue
        before = coupon.reserved_count
        for r in held:
            r.status = CouponReservationStatus.EXPIRED
        coupon.reserved_count = max(before - len(held), 0)
        report.coupons.append(CouponRelease(coupon.code, len(held), before, coupon.reserved_count))
    report.coupons.sort(key=lambda c: c.code)
    s.flush()
    return report


def held_now(s: Session, coupon: Coupon) -> int:
    """Reservations of the coupon still `reserved` (expired or not)."""
    return int(
        s.scalar(
            select(func.count(CouponReservation.id)).where(
                CouponReservation.coupon_id == coupon.id,
                CouponReservation.status == CouponReservationStatus.RESERVED,
            )
        )
        or 0
    )


def repair_reserved_count(s: Session, coupon: Coupon) -> tuple[int, int]:
    """Set the reserved count to the reservations the coupon holds; the caller locks it.

    Returns (before, after). No commit.
    """
    before = coupon.reserved_count
    coupon.reserved_count = held_now(s, coupon)
    return before, coupon.reserved_count
