"""`flask --app wsgi demo seed` (database only) and `demo stripe-sync`."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from console.clitools import CommandError, echo

demo_cli = AppGroup("demo", help="Demo data (refused in production).")


@demo_cli.command("seed")
@click.option("--orders", default=3000, show_default=True, help="Volume of healthy orders.")
def seed_cmd(orders: int) -> None:
    """Seed deterministic demo data with a case of every runbook failure."""
    settings = current_app.config["SETTINGS"]
    if settings.is_production:
        raise CommandError("demo seed is refused when CONSOLE_ENV=production")
    from console import db
    from console.demo.seed import seed

    summary = seed(db.session(), volume=orders)
    for key, value in summary.items():
        echo(f"{key}: {value}")


@demo_cli.command("stripe-sync")
def stripe_sync_cmd() -> None:
    """Create the Stripe-side objects the seeded cases need (test mode or double only)."""
    settings = current_app.config["SETTINGS"]
    if settings.stripe_api_key.startswith(("sk_live", "rk_live")):
        raise CommandError("stripe-sync refuses a live Stripe key")
    from console import db
    from console.demo.stripe_sync import stripe_sync
    from console.payments.gateway import GatewayError, gateway

    try:
        summary = stripe_sync(db.session(), gateway())
    except GatewayError as exc:
        raise CommandError(f"Stripe: {exc}") from exc
    echo(", ".join(f"{k}={v}" for k, v in summary.items()))
