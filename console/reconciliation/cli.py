"""`flask --app wsgi reconcile run [filters]`, for cron and after incidents."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from console.clitools import CommandError, cron_job, echo

reconcile_cli = AppGroup("reconcile", help="Compare Stripe with our records.")


@reconcile_cli.command("run")
@click.option("--order-id")
@click.option("--listing-id")
@click.option("--email", help="Buyer or seller email")
@click.option("--payment-intent")
@click.option("--since", help="UTC date (default: 30 days ago)")
@click.option("--until", help="UTC date (default: now)")
@cron_job("reconcile")
def run_cmd(**filters: str | None) -> None:
    """Run reconciliation and print its summary; safe to run twice at once."""
    from console import db
    from console.ops.jobs import job_run
    from console.payments.cli import cli_actor
    from console.payments.gateway import gateway
    from console.reconciliation.services import run_reconciliation

    s = db.session()
    clean = {k: v for k, v in filters.items() if v}
    with job_run(s, "reconcile") as job:
        run = run_reconciliation(s, gateway(), clean, started_by=str(cli_actor()["sub"]))
        job.scanned, job.acted = run.scanned_stripe + run.scanned_local, run.findings_new
        job.errors = 1 if run.error else 0
        job.last_error = run.error
        job.details = {"run_id": run.id}
    echo(
        f"run #{run.id} {run.status.value}: stripe objects={run.scanned_stripe} "
        f"local orders={run.scanned_local} stripe calls={run.stripe_calls} "
        f"new={run.findings_new} seen again={run.findings_seen} auto-closed={run.findings_closed}"
    )
    if run.error:
        raise CommandError(run.error)
