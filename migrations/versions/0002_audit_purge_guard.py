"""audit purge guard: DELETE only by the purge command, only of entries older than 365 days

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GUARDED = """
CREATE OR REPLACE FUNCTION audit_entries_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- The retention purge sets console.audit_purge for its own transaction;
    -- even then only entries older than 365 days may go. Nothing else may
    -- change or remove history.
    IF TG_OP = 'DELETE'
       AND current_setting('console.audit_purge', true) = 'on'
       AND OLD.ts < now() - interval '365 days' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_entries is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
"""

STRICT = """
CREATE OR REPLACE FUNCTION audit_entries_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_entries is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(GUARDED)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(STRICT)
