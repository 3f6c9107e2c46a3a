"""The daily reconciliation (runbook 003: "Daily: automated check")."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from console.ops.jobs import JobReport, scheduled
from console.payments.gateway import gateway
from console.reconciliation.models import ReconciliationRun

SYSTEM_SUB = "system:reconcile"


@scheduled(
    "reconcile",
    title="Stripe reconciliation",
    every=timedelta(hours=24),
    cron="0 3 * * *",
    command="reconcile run",
    queue="reconcile",
)
def reconcile_job(s: Session, dry_run: bool) -> JobReport:
    """An unfiltered run over the default window; it closes findings no longer seen."""
    from console.reconciliation.services import run_reconciliation

    if dry_run:
        return JobReport(lines=["dry run: a reconciliation only reads; run it without --dry-run"])
    run = run_reconciliation(s, gateway(), {}, started_by=SYSTEM_SUB)
    return JobReport(
        scanned=run.scanned_stripe + run.scanned_local,
        acted=run.findings_new,
        errors=1 if run.error else 0,
        last_error=run.error,
        details={"run_id": run.id, "stripe_calls": run.stripe_calls},
        lines=[run_summary(run)],
    )


def run_summary(run: ReconciliationRun) -> str:
    return (
        f"run #{run.id} {run.status.value}: stripe objects={run.scanned_stripe} "
        f"local orders={run.scanned_local} stripe calls={run.stripe_calls} "
        f"new={run.findings_new} seen again={run.findings_seen} auto-closed={run.findings_closed}"
    )
