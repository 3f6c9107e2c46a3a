"""`flask --app wsgi demo seed` (database only) and `demo stripe-sync`."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

demo_cli = AppGroup("demo", help="Demo data (refused in production).")


@demo_cli.command("seed")
@click.option("--orders", default=3000, show_default=True, help="Volume of healthy orders.")
def seed_cmd(orders: int) -> None:
    """Seed deterministic demo data with a case of every runbook failure."""
    settings = current_app.config["SETTINGS"]
    if settings.is_production:
        raise click.ClickException("demo seed is refused when CONSOLE_ENV=production")
    from console import db
    from console.demo.seed import seed

    summary = seed(db.session(), volume=orders)
    for key, value in summary.items():
        click.echo(f"{key}: {value}")
