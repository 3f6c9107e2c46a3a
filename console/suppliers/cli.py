"""`flask --app wsgi suppliers sync [--dry-run]`, for cron (the engine runs it too; runbook 001)."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from console.clitools import run_job_command

suppliers_cli = AppGroup("suppliers", help="Supplier catalogues and order forwarding.")


@suppliers_cli.command("sync")
@click.option("--dry-run", is_flag=True, help="Say what would be synced and forwarded; do nothing.")
def sync_cmd(dry_run: bool) -> None:
    """Sync every supplier's catalogue and forward paid orders waiting for a supplier.

    Records a job run (shown on /ops/jobs); a second run at the same time skips.
    """
    run_job_command("supplier-sync", dry_run=dry_run)
