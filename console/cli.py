"""Command-line interface: `flask --app wsgi <group> <command>`."""

from __future__ import annotations

import click
from alembic import command
from alembic.config import Config
from flask import Flask, current_app
from flask.cli import AppGroup

from console.app import ROOT

db_cli = AppGroup("db", help="Database schema (Alembic migrations).")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    url = current_app.config["SETTINGS"].database_url
    command.upgrade(alembic_config(url), revision)
    click.echo(f"database at {revision}")


@db_cli.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION."""
    command.downgrade(alembic_config(current_app.config["SETTINGS"].database_url), revision)


@db_cli.command("current")
def db_current() -> None:
    """Show the applied revision."""
    command.current(alembic_config(current_app.config["SETTINGS"].database_url))


def register_cli(app: Flask) -> None:
    app.cli.add_command(db_cli)
    from console.audit.cli import audit_cli
    from console.coupons.cli import coupons_cli
    from console.demo.cli import demo_cli
    from console.integrations.cli import ingest_cli, integrations_cli
    from console.invoices.cli import invoices_cli
    from console.payments.cli import payouts_cli, webhooks_cli
    from console.reconciliation.cli import reconcile_cli

    groups = (
        demo_cli,
        webhooks_cli,
        payouts_cli,
        audit_cli,
        invoices_cli,
        reconcile_cli,
        coupons_cli,
        ingest_cli,
        integrations_cli,
    )
    for group in groups:
        app.cli.add_command(group)
