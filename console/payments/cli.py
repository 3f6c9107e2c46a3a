"""`flask --app wsgi webhooks replay EVENT_ID`, `payouts resume` and `payouts auto-release`."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from console.clitools import CommandError, cli_actor, echo, run_job_command

webhooks_cli = AppGroup("webhooks", help="Stripe webhook events.")
payouts_cli = AppGroup("payouts", help="Seller payouts and money movements.")


@webhooks_cli.command("replay")
@click.argument("event_id")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
def replay_cmd(event_id: str, dry_run: bool) -> None:
    """Re-run processing of an unprocessed event from its stored body."""
    from console import db
    from console.audit.service import record
    from console.payments.actions import describe_pending_changes, load_event
    from console.payments.webhooks import (
        ProcessResult,
        apply_event,
        apply_event_changes,
        is_retryable,
        mark_failed,
        tell_the_shop,
    )

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
        status, changed = apply_event_changes(s, event)
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
    entry = record(
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
    # As the Replay button does: the shop hears of each order the replay changed.
    tell_the_shop(
        s,
        event,
        changed,
        event_type="order.stripe_event_replayed",
        actor=cli_actor(),
        audit_seq=entry.seq,
    )
    s.commit()
    echo(f"{event_id}: {status.value}")


@payouts_cli.command("resume")
@click.option("--dry-run", is_flag=True, help="Count what is in flight; re-issue nothing.")
def resume_cmd(dry_run: bool) -> None:
    """Finish in-flight money movements (transfers and refunds) with their original keys."""
    run_job_command("payouts-resume", dry_run=dry_run)


@payouts_cli.command("auto-release")
@click.option("--dry-run", is_flag=True, help="Say what would happen; move no money.")
def auto_release_cmd(dry_run: bool) -> None:
    """Release eligible payouts (cron, every 10 min); finishes in-flight attempts first."""
    run_job_command("payouts-auto-release", dry_run=dry_run)
