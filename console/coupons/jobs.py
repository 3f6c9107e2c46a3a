"""The coupon reservation expiry job (runbook 002: reservation leaks)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from console.coupons.services import expire_reservations
from console.ops.jobs import JobReport, scheduled


@scheduled(
    "coupons-expire-reservations",
    title="Coupon reservation expiry",
    every=timedelta(minutes=15),
    cron="*/15 * * * *",
    command="coupons expire-reservations",
)
def expire_reservations_job(s: Session, dry_run: bool) -> JobReport:
    """Expire reservations past their time and give the coupons their counts back."""
    report = expire_reservations(s, dry_run=dry_run)
    return JobReport(scanned=report.scanned, acted=report.expired)
