"""`flask --app wsgi invoices retry-stuck [--dry-run]`, for cron (the engine runs it too)."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from console.clitools import run_job_command

invoices_cli = AppGroup("invoices", help="Invoice transmission.")


@invoices_cli.command("retry-stuck")
@click.option("--dry-run", is_flag=True, help="List what is due; transmit nothing.")
def retry_stuck_cmd(dry_run: bool) -> None:
    """Retry invoices that are due; safe to run in two processes at once."""
    run_job_command("invoices-retry-stuck", dry_run=dry_run)
