"""`flask --app wsgi webhooks replay EVENT_ID` and `payouts resume`."""

from __future__ import annotations

import getpass

import click
from flask.cli import AppGroup

from console.clitools import CommandError, cron_job, echo

webhooks_cli = AppGroup("webhooks", help="Stripe webhook events.")
payouts_cli = AppGroup("payouts", help="Seller payouts and money movements.")


def cli_actor() -> dict[str, object]:
    """Who ran a command: the operating-system user, marked as the CLI."""
    try:
        user = getpass.getuser()
    except OSError:
        user = "unknown"
    return {"sub": f"cli:{user}", "email": None, "roles": ["cli"]}


@webhooks_cli.command("replay")
@click.argument("event_id")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
def replay_cmd(event_id: str, dry_run: bool) -> None:
    """Re-run processing of an unprocessed event from its stored body."""
    from console import db
    from console.audit.service import record
    from console.payments.actions import describe_pending_changes, load_event
    from console.payments.webhooks import ProcessResult, apply_event, is_retryable, mark_failed

    s = db.session()
    event = load_event(s, event_id, True)
    if event is None:
        raise CommandError(f"no stored event {event_id}")
    if event.processed_at is not None:
        raise CommandError(
            f"{event_id} was already processed at {event.processed_at:%Y-%m-%d %H:%M} UTC; "
            "replay is only allowed while unprocessed"
        )
    if dry_run:
        nested = s.begin_nested()
        try:
            with s.no_autoflush:
                apply_event(s, event, flush=False)
                for what, change in describe_pending_changes(s, skip=event) or [("-", "no change")]:
                    echo(f"would change {what}: {change}")
        except Exception as exc:
            echo(f"would fail: {exc}")
        finally:
            nested.rollback()
            s.rollback()
        return
    before = {"status": event.status.value, "attempts": event.attempts}
    try:
        status = apply_event(s, event)
    except Exception as exc:
        s.rollback()
        result: ProcessResult = mark_failed(s, event_id, str(exc), retryable=is_retryable(exc))
        record(
            s,
            action="webhooks:event:replay",
            outcome="failed",
            actor=cli_actor(),
            target_type="webhook_event",
            target_id=event_id,
            reason="replayed from the command line",
            details={"error": str(exc)[:1000]},
        )
        s.commit()
        raise CommandError(f"replay failed: {result.error}") from exc
    record(
        s,
        action="webhooks:event:replay",
        outcome="success",
        actor=cli_actor(),
        target_type="webhook_event",
        target_id=event_id,
        reason="replayed from the command line",
        before=before,
        after={"status": status.value, "attempts": event.attempts},
    )
    s.commit()
    echo(f"{event_id}: {status.value}")


@payouts_cli.command("resume")
@click.option("--dry-run", is_flag=True)
@cron_job("payouts-resume")
def resume_cmd(dry_run: bool) -> None:
    """Finish in-flight money movements (transfers and refunds) with their original keys."""
    from console import db
    from console.ops.jobs import job_run
    from console.payments.gateway import gateway
    from console.payments.money import resume

    s = db.session()
    if dry_run:
        report = resume(s, gateway(), dry_run=True)
        echo(f"scanned={report.scanned} (dry run: nothing re-issued)")
        return
    with job_run(s, "payouts-resume") as run:
        report = resume(s, gateway())
        finish_approved_releases()
        run.scanned, run.acted = report.scanned, report.finished
        run.errors = report.failed + report.still_in_flight
        run.last_error = report.last_error
        run.details = {"failed": report.failed, "still_in_flight": report.still_in_flight}
    echo(
        f"scanned={report.scanned} acted={report.finished} errors={report.failed} "
        f"still_in_flight={report.still_in_flight}"
    )


def finish_approved_releases() -> None:
    """Continue approved releases a stopped process left half done."""
    from sqlalchemy import select

    from console import db
    from console.payments.gateway import gateway
    from console.payouts.models import Approval, ApprovalStatus
    from console.payouts.release import execute_approval

    session = db.session()
    ids = list(
        session.scalars(select(Approval.id).where(Approval.status == ApprovalStatus.APPROVED))
    )
    session.rollback()
    for approval_id in ids:
        counts = execute_approval(session, gateway(), approval_id, actor=cli_actor())
        echo(f"approval #{approval_id}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))


@payouts_cli.command("auto-release")
@click.option("--dry-run", is_flag=True, help="Say what would happen; move no money.")
@cron_job("payouts-auto-release")
def auto_release_cmd(dry_run: bool) -> None:
    """Release eligible payouts (cron, every 10 min); finishes in-flight attempts first."""
    from flask import current_app

    from console import db
    from console.ops.jobs import job_run
    from console.payments.gateway import gateway
    from console.payments.money import resume
    from console.payouts.release import auto_release

    limit = int(current_app.config.get("PAYOUT_AUTO_RELEASE_LIMIT", 50_000))
    s = db.session()
    if dry_run:
        report = auto_release(s, gateway(), limit=limit, dry_run=True)
        for line in report.lines:
            echo(line)
        echo(f"scanned={report.scanned} (dry run)")
        return
    with job_run(s, "payouts-auto-release") as run:
        resumed = resume(s, gateway())
        report = auto_release(s, gateway(), limit=limit)
        run.scanned, run.acted, run.errors = report.scanned, report.released, report.errors
        run.last_error = report.last_error or resumed.last_error
        run.details = {"requested": report.requested, "resumed": resumed.finished}
    for line in report.lines:
        echo(line)
    echo(
        f"scanned={report.scanned} released={report.released} "
        f"approval_requested={report.requested} errors={report.errors}"
    )
