"""The invoice retry job (runbooks 000 and 002): retry what is due, with backoff."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from console.invoices.services import backoff, retry_stuck
from console.ops.jobs import JobReport, scheduled
from console.payments.gateway import gateway


@scheduled(
    "invoices-retry-stuck",
    title="Invoice retry",
    every=timedelta(minutes=15),
    cron="*/15 * * * *",
    command="invoices retry-stuck",
)
def retry_stuck_job(s: Session, dry_run: bool) -> JobReport:
    """Retry every invoice that is due once; safe in two processes (SKIP LOCKED per row)."""
    report = retry_stuck(s, gateway(), backoff(), dry_run=dry_run)
    return JobReport(
        scanned=report.scanned,
        acted=report.succeeded,
        errors=report.failed,
        last_error=report.last_error,
        details={"retried": report.retried},
        lines=[f"{ref}: {what}" for ref, what in report.results],
    )
