"""`flask --app wsgi invoices retry-stuck [--dry-run]`, meant for cron."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from console.clitools import cron_job, echo

invoices_cli = AppGroup("invoices", help="Invoice transmission.")


@invoices_cli.command("retry-stuck")
@click.option("--dry-run", is_flag=True, help="List what is due; transmit nothing.")
@cron_job("invoices-retry-stuck")
def retry_stuck_cmd(dry_run: bool) -> None:
    """Retry invoices that are due; safe to run in two processes at once."""
    from console import db
    from console.invoices.services import backoff, retry_stuck
    from console.ops.jobs import job_run
    from console.payments.gateway import gateway

    s = db.session()
    if dry_run:
        report = retry_stuck(s, gateway(), backoff(), dry_run=True)
        for ref, what in report.results:
            echo(f"{ref}: {what}")
        echo(f"scanned={report.scanned} (dry run)")
        return
    with job_run(s, "invoices-retry-stuck") as run:
        report = retry_stuck(s, gateway(), backoff())
        run.scanned, run.acted, run.errors = report.scanned, report.succeeded, report.failed
        run.last_error = report.last_error
        run.details = {"retried": report.retried}
    for ref, what in report.results:
        echo(f"{ref}: {what}")
    echo(
        f"scanned={report.scanned} retried={report.retried} "
        f"succeeded={report.succeeded} failed={report.failed}"
    )
