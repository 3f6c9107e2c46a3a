"""`flask --app wsgi coupons expire-reservations [--dry-run]`, for cron."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from console.clitools import cron_job, echo

coupons_cli = AppGroup("coupons", help="Coupon reservations.")


@coupons_cli.command("expire-reservations")
@click.option("--dry-run", is_flag=True)
@cron_job("coupons-expire-reservations")
def expire_cmd(dry_run: bool) -> None:
    """Expire reservations past their time and repair the coupons' reserved counts."""
    from console import db
    from console.coupons.services import expire_reservations
    from console.ops.jobs import job_run

    s = db.session()
    if dry_run:
        report = expire_reservations(s, dry_run=True)
        echo(f"scanned={report.scanned} (dry run)")
        return
    with job_run(s, "coupons-expire-reservations") as run:
        report = expire_reservations(s)
        run.scanned, run.acted = report.scanned, report.expired
    echo(f"scanned={report.scanned} acted={report.expired} errors=0")
