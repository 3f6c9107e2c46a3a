"""`flask --app wsgi reconcile run [filters]`, for cron and after incidents."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from console.clitools import CommandError, cli_actor, echo, run_job_command

reconcile_cli = AppGroup("reconcile", help="Compare Stripe with our records.")


@reconcile_cli.command("run")
@click.option("--order-id")
@click.option("--listing-id")
@click.option("--email", help="Buyer or seller email")
@click.option("--payment-intent")
@click.option("--since", help="UTC date (default: 30 days ago)")
@click.option("--until", help="UTC date (default: now)")
def run_cmd(**filters: str | None) -> None:
    """Run reconciliation and print its summary; safe to run twice at once.

    Without filters this is the daily job (recorded on /ops/jobs); with filters
    it is a narrower look that neither closes findings nor counts as the job.
    """
    from console import db
    from console.payments.gateway import gateway
    from console.reconciliation.jobs import run_summary
    from console.reconciliation.services import run_reconciliation

    clean = {k: v for k, v in filters.items() if v}
    if not clean:
        run_job_command("reconcile")
        return
    run = run_reconciliation(db.session(), gateway(), clean, started_by=str(cli_actor()["sub"]))
    echo(run_summary(run))
    if run.error:
        raise CommandError(run.error)
