"""webhook queue: the partial index workers claim stored events by (issue 15)

Intake stores an event as `received` and a worker claims the oldest waiting
ones (`FOR UPDATE SKIP LOCKED`, by id). This index holds only the events
still waiting, so a claim reads a handful of index entries however many
events were ever received or are failed and waiting for a person.

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"  # after 0007 (merged first)
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_webhook_events_queued",
        "webhook_events",
        ["id"],
        unique=False,
        postgresql_where=sa.text("status = 'received' AND processed_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_events_queued", table_name="webhook_events")
