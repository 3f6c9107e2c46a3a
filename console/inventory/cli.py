"""`flask --app wsgi inventory drift [--dry-run]`: list drift for cron and scripts."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from console.clitools import echo

inventory_cli = AppGroup("inventory", help="Stock and its ledger.")


@inventory_cli.command("drift")
@click.option("--dry-run", is_flag=True, help="Accepted for symmetry: this command never writes.")
def drift_cmd(dry_run: bool) -> None:
    """List items whose stock count differs from their ledger sum, oldest drift first.

    Read-only; corrections are posted from /inventory/drift by an admin.
    """
    from console import db
    from console.inventory.services import inventory_drift

    report = inventory_drift(db.session(), dry_run=dry_run)
    for line in report.items:
        since = f"{line.since:%Y-%m-%d %H:%M} UTC" if line.since else "unknown"
        echo(
            f"{line.sku}: stock={line.stock_count} ledger={line.ledger_total} "
            f"drift={line.drift:+d} pending_reserved={line.pending_units} since={since}"
        )
    echo(f"scanned={report.scanned} drifting={len(report.items)} acted=0 errors=0")
