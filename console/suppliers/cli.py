"""`flask --app wsgi suppliers sync [--dry-run]`, for cron (runbook 001)."""

from __future__ import annotations

import click
from flask.cli import AppGroup

suppliers_cli = AppGroup("suppliers", help="Supplier catalogues and order forwarding.")


@suppliers_cli.command("sync")
@click.option("--dry-run", is_flag=True, help="Say what would be synced and forwarded; do nothing.")
def sync_cmd(dry_run: bool) -> None:
    """Sync every supplier's catalogue and forward paid orders waiting for a supplier.

    Records a job run (shown on /ops/jobs); a second run at the same time skips.
    """
    from console import db
    from console.suppliers.gateway import supplier_gateway
    from console.suppliers.services import sync_suppliers

    report = sync_suppliers(db.session(), supplier_gateway(), dry_run=dry_run)
    for line in report.lines:
        click.echo(line)
    if report.skipped:
        return
    suffix = " (dry run)" if dry_run else ""
    click.echo(
        f"scanned={report.scanned} acted={report.acted} errors={report.errors}{suffix}"
        + (f" last_error={report.last_error}" if report.last_error else "")
    )
