"""The supplier sync job (runbook 001): catalogues, then paid orders waiting for a supplier."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from console.ops.jobs import JobReport, scheduled


@scheduled(
    "supplier-sync",
    title="Supplier sync",
    every=timedelta(hours=1),
    cron="0 * * * *",
    command="suppliers sync",
)
def supplier_sync_job(s: Session, dry_run: bool) -> JobReport:
    """Sync every supplier's catalogue page by page and forward the orders that wait."""
    from console.suppliers.gateway import supplier_gateway
    from console.suppliers.services import sync_suppliers

    report = sync_suppliers(s, supplier_gateway(), dry_run=dry_run)
    return JobReport(
        scanned=report.scanned,
        acted=report.acted,
        errors=report.errors,
        last_error=report.last_error,
        details={"lines": report.lines[:50]},
        lines=report.lines,
    )
