"""`flask --app wsgi coupons expire-reservations [--dry-run]`, for cron (the engine runs it too)."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from console.clitools import run_job_command

coupons_cli = AppGroup("coupons", help="Coupon reservations.")


@coupons_cli.command("expire-reservations")
@click.option("--dry-run", is_flag=True)
def expire_cmd(dry_run: bool) -> None:
    """Expire reservations past their time and repair the coupons' reserved counts."""
    run_job_command("coupons-expire-reservations", dry_run=dry_run)
