"""coupons expire-reservations: leaks expire once and the counts are repaired."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from console import db
from console.coupons.models import Coupon, CouponReservation
from console.db import utcnow


def test_expired_reservations_are_released_and_counted_back(app):
    with app.app_context():
        s = db.session()
        coupon = Coupon(code="WELCOME10", reserved_count=3)
        s.add(coupon)
        s.flush()
        for minutes in (-60, -5, 30):  # two leaked, one still valid
            s.add(
                CouponReservation(
                    coupon_id=coupon.id, expires_at=utcnow() + timedelta(minutes=minutes)
                )
            )
        s.commit()
    runner = app.test_cli_runner()
    assert (
        "scanned=2 (dry run)"
        in runner.invoke(args=["coupons", "expire-reservations", "--dry-run"]).output
    )
    result = runner.invoke(args=["coupons", "expire-reservations"])
    assert "scanned=2 acted=2" in result.output
    with app.app_context():
        s = db.session()
        assert s.scalar(select(Coupon.reserved_count)) == 1
        statuses = sorted(r.status.value for r in s.scalars(select(CouponReservation)))
        assert statuses == ["expired", "expired", "reserved"]
    again = runner.invoke(args=["coupons", "expire-reservations"])
    assert "scanned=0 acted=0" in again.output
