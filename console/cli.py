"""Command-line interface: `flask --app wsgi <group> <command>`."""

from __future__ import annotations

import click
from alembic import command
from alembic.config import Config
from flask import Flask, current_app
from flask.cli import AppGroup

from console.clitools import CommandError, echo
from console.extensions import ROOT

db_cli = AppGroup("db", help="Database schema (Alembic migrations).")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head), as the owner.

    Connects with DATABASE_MIGRATION_URL when set (else DATABASE_URL). When the
    application connects as another role, its grants are re-applied afterwards,
    so tables a migration added are covered and the audit tables stay append-only.
    """
    from console.dbroles import RoleError, grant_app_role, role_of

    settings = current_app.config["SETTINGS"]
    command.upgrade(alembic_config(settings.owner_database_url), revision)
    echo(f"database at {revision}")
    app_role = role_of(settings.database_url)
    if settings.database_migration_url and app_role != role_of(settings.owner_database_url):
        try:
            grant_app_role(settings.owner_database_url, str(app_role))
        except RoleError as exc:
            if "does not exist" not in str(exc):
                raise CommandError(str(exc)) from exc
            echo(f"application role {app_role} does not exist yet: `db create-app-role`")
            return
        echo(f"grants of the application role {app_role} re-applied")


@db_cli.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION (as the owner)."""
    command.downgrade(alembic_config(current_app.config["SETTINGS"].owner_database_url), revision)


@db_cli.command("current")
def db_current() -> None:
    """Show the applied revision."""
    command.current(alembic_config(current_app.config["SETTINGS"].owner_database_url))


@db_cli.command("create-app-role")
@click.argument("name")
@click.option(
    "--password-env",
    metavar="VAR",
    help="Set the role's password from this environment variable (never on the command line).",
)
def db_create_app_role(name: str, password_env: str | None) -> None:
    """Create the application role NAME (if missing) and grant it what the app needs.

    Runs as the owner (DATABASE_MIGRATION_URL, else DATABASE_URL), after
    `db upgrade`. NAME may then read and write the queues' tables, read the
    audit tables and append audit entries: no UPDATE, DELETE or TRUNCATE
    there, no ALTER anywhere, no direct write to the chain head. Point
    DATABASE_URL at NAME and DATABASE_MIGRATION_URL at the owner.
    """
    import os

    from console.dbroles import RoleError, create_app_role

    password = None
    if password_env:
        password = os.environ.get(password_env)
        if not password:
            raise CommandError(f"{password_env} is not set")
    settings = current_app.config["SETTINGS"]
    try:
        statements = create_app_role(settings.owner_database_url, name, password)
    except RoleError as exc:
        raise CommandError(str(exc)) from exc
    for statement in statements:
        echo(statement)
    echo(f"application role {name} ready")


def register_cli(app: Flask) -> None:
    app.cli.add_command(db_cli)
    from console.audit.cli import audit_cli
    from console.coupons.cli import coupons_cli
    from console.demo.cli import demo_cli
    from console.integrations.cli import ingest_cli, integrations_cli
    from console.inventory.cli import inventory_cli
    from console.invoices.cli import invoices_cli
    from console.jobs.cli import jobs_cli
    from console.payments.cli import payouts_cli, webhooks_cli
    from console.reconciliation.cli import reconcile_cli
    from console.suppliers.cli import suppliers_cli

    groups = (
        demo_cli,
        webhooks_cli,
        payouts_cli,
        audit_cli,
        invoices_cli,
        reconcile_cli,
        coupons_cli,
        jobs_cli,
        inventory_cli,
        suppliers_cli,
        ingest_cli,
        integrations_cli,
    )
    for group in groups:
        app.cli.add_command(group)
