"""The payout jobs: auto-release every 10 minutes (runbook 003) and the resume of
money movements a stopped process left in flight."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from console.ops.jobs import JobReport, scheduled
from console.payments.gateway import gateway
from console.payments.money import resume

SYSTEM_RESUME: dict[str, Any] = {"sub": "system:payouts-resume", "email": None, "roles": []}


@scheduled(
    "payouts-auto-release",
    title="Payout auto-release",
    every=timedelta(minutes=10),
    cron="*/10 * * * *",
    command="payouts auto-release",
    queue="money",
)
def auto_release_job(s: Session, dry_run: bool) -> JobReport:
    """Finish in-flight transfers, then release eligible payouts up to the limit."""
    from console.payouts.release import auto_release

    limit = int(current_app.config.get("PAYOUT_AUTO_RELEASE_LIMIT", 50_000))
    if dry_run:
        report = auto_release(s, gateway(), limit=limit, dry_run=True)
        return JobReport(scanned=report.scanned, lines=report.lines)
    resumed = resume(s, gateway())
    report = auto_release(s, gateway(), limit=limit)
    return JobReport(
        scanned=report.scanned,
        acted=report.released,
        errors=report.errors,
        last_error=report.last_error or resumed.last_error,
        details={"approval_requested": report.requested, "resumed": resumed.finished},
        lines=report.lines,
    )


@scheduled(
    "payouts-resume",
    title="Money movement resume",
    every=timedelta(minutes=10),
    cron="5-59/10 * * * *",
    command="payouts resume",
    queue="money",
)
def resume_job(s: Session, dry_run: bool) -> JobReport:
    """Re-issue in-flight refunds and transfers with their keys; finish approved releases."""
    report = resume(s, gateway(), dry_run=dry_run)
    if dry_run:
        return JobReport(scanned=report.scanned, lines=["dry run: nothing re-issued"])
    lines, released = finish_approved_releases(s)
    return JobReport(
        scanned=report.scanned,
        acted=report.finished + released,
        errors=report.failed + report.still_in_flight,
        last_error=report.last_error,
        details={"failed": report.failed, "still_in_flight": report.still_in_flight},
        lines=lines,
    )


def finish_approved_releases(s: Session) -> tuple[list[str], int]:
    """Continue approved releases a stopped process left half done."""
    from console.payouts.models import Approval, ApprovalStatus
    from console.payouts.release import execute_approval

    ids = list(s.scalars(select(Approval.id).where(Approval.status == ApprovalStatus.APPROVED)))
    s.rollback()
    lines, released = [], 0
    for approval_id in ids:
        counts = execute_approval(s, gateway(), approval_id, actor=SYSTEM_RESUME)
        released += counts["released"]
        lines.append(
            f"approval #{approval_id}: " + ", ".join(f"{k}={v}" for k, v in counts.items())
        )
    return lines, released
