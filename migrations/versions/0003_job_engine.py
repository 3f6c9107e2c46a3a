"""job engine: procrastinate's schema; repeat detection for actions; run heartbeats

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

The procrastinate schema is the one its release 3.10.0 ships, vendored in
migrations/sql/ so this migration always creates the same tables whatever
version is installed later (an upgrade of procrastinate adds a migration
with its own migration scripts).
"""

from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = Path(__file__).resolve().parent.parent / "sql" / "procrastinate-3.10.0.sql"


def upgrade() -> None:
    # The driver connection: the schema's plpgsql bodies contain `%` and `:`,
    # which must reach PostgreSQL untouched by parameter parsing.
    op.get_bind().connection.driver_connection.execute(SCHEMA.read_text())

    op.add_column("idempotency_records", sa.Column("fingerprint", sa.String(64), nullable=True))
    op.create_index(
        "ix_idempotency_records_repeat",
        "idempotency_records",
        ["actor_sub", "fingerprint", "created_at"],
        postgresql_where=sa.text("fingerprint IS NOT NULL"),
    )
    op.add_column(
        "reconciliation_runs",
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("reconciliation_runs", "heartbeat_at")
    op.drop_index("ix_idempotency_records_repeat", table_name="idempotency_records")
    op.drop_column("idempotency_records", "fingerprint")
    for table in (
        "procrastinate_events",
        "procrastinate_periodic_defers",
        "procrastinate_jobs",
        "procrastinate_workers",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    op.execute(
        "DO $$ DECLARE f record; BEGIN FOR f IN SELECT oid::regprocedure AS sig FROM pg_proc "
        "WHERE proname LIKE 'procrastinate%' LOOP EXECUTE 'DROP FUNCTION ' || f.sig || ' CASCADE';"
        " END LOOP; END $$"
    )
    for typ in ("procrastinate_job_to_defer_v1", "procrastinate_job_event_type",
                "procrastinate_job_status"):
        op.execute(f"DROP TYPE IF EXISTS {typ} CASCADE")
