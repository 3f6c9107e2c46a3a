"""audit: index the other records an action changed (details.extra.records)

An order fixed through a reconciliation finding or an event replay shows that
action in its own history; the history query looks the order up in the
entry's `records` (JSONB containment), which this GIN index serves.

Revision ID: 0009
Revises: 0006
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ix_audit_entries_records ON audit_entries "
        "USING gin (((details -> 'extra') -> 'records') jsonb_path_ops)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_audit_entries_records")
