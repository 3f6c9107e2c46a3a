"""The hourly signed audit checkpoint: the chain's head, anchored outside the database."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from console.ops.jobs import JobReport, scheduled


@scheduled(
    "audit-checkpoint",
    title="Signed audit checkpoint",
    every=timedelta(hours=1),
    cron="30 * * * *",
    command="audit checkpoint",
)
def audit_checkpoint_job(s: Session, dry_run: bool) -> JobReport:
    """Sign the newest entry's seq and hash into AUDIT_CHECKPOINT_DIR (and the log).

    A checkpoint that no longer matches the database (truncated or rewritten
    history) is an error of the run, with the reason: /ops/jobs shows it and
    the job's last-run errors gauge alerts.
    """
    from console.audit.checkpoints import CheckpointError, write_checkpoint
    from console.audit.export import ExportError

    if dry_run:
        return JobReport(lines=["dry run: a checkpoint is written only without --dry-run"])
    try:
        checkpoint = write_checkpoint(s)
    except (CheckpointError, ExportError) as exc:
        return JobReport(errors=1, last_error=str(exc), lines=[f"refused: {exc}"])
    return JobReport(
        scanned=checkpoint.seq,
        acted=1,
        details={"seq": checkpoint.seq},
        lines=[
            f"checkpoint seq={checkpoint.seq} hash={checkpoint.hash} written to {checkpoint.path}"
        ],
    )
