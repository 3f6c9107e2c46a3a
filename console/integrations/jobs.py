"""Delivering the outbox to the shop: at once after each event, and every minute for retries."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from console.ops.jobs import JobReport, scheduled

BATCH = 500


@scheduled(
    "integrations-deliver",
    title="Event delivery to the shop",
    every=timedelta(minutes=1),
    cron="* * * * *",
    command="integrations deliver",
)
def deliver_job(s: Session, dry_run: bool) -> JobReport:
    """Send every due delivery (new, or a retry whose backoff has passed), signed."""
    from console.integrations.delivery import deliver_due

    if dry_run:
        return JobReport(lines=["dry run: nothing is sent without --dry-run"])
    report = deliver_due(s, limit=BATCH)
    return JobReport(
        scanned=report.scanned,
        acted=report.acted,
        errors=report.errors,
        last_error=report.last_error,
        details={"retried": report.retried, "failed": report.failed},
        lines=report.lines,
    )
