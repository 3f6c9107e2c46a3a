"""payouts: the ready page's default order from an index (issue 15)

`/payouts/ready` lists release candidates oldest first. With no index in that
order PostgreSQL fetched every candidate and sorted them for each page (4.3 ms
at 1,520 candidates of 100,000 payouts); with this one it walks the candidates
in page order and stops after a page (0.07 ms).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_seller_payouts_ready_created",
        "seller_payouts",
        ["created_at", "id"],
        unique=False,
        postgresql_where=sa.text(
            "status IN ('held', 'eligible') AND NOT admin_hold AND dispute_status <> 'open'"
        ),
    )


def downgrade() -> None:
    op.drop_index("ix_seller_payouts_ready_created", table_name="seller_payouts")
