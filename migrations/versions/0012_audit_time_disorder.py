"""audit: the chain head keeps how far out of seq order an entry's time can be (issue 15)

The audit log lists by seq; a time window (`since`, `until`) is a filter on
`ts`. An entry's time is taken once it holds the chain head, so times follow
seq except where clocks differ (two hosts, a clock stepped back). To start the
seq walk at the window's edge the page needed the window's lowest and highest
seq, and found them by reading every entry in the window: 10 ms for a month of
a million-entry log, every entry since then for a `since` alone.

The head now keeps the greatest time appended (`max_ts`) and the largest amount
by which an entry's time was earlier than an entry before it (`max_disorder`,
D), both moved by the append trigger with the rest of the head. With D, one
index probe on either side bounds the window in seq exactly (see
`console.audit.views.seq_bounds`): an entry timed before `since - D` precedes
every entry in the window, one timed at or after `until + D` follows them all.
This migration computes both from the entries already there (one ordered scan).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _migration_0005() -> Any:
    """0005's module (its trigger text is what this one changes and what downgrade restores)."""
    path = Path(__file__).with_name("0005_audit_roles.py")
    spec = importlib.util.spec_from_file_location("console_migration_0005", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The append trigger of 0005 with one change: its last statement also moves max_ts and
# max_disorder (the right-hand sides read the head before this entry).
APPEND_0005: str = _migration_0005().APPEND
MOVE_HEAD = "    UPDATE public.audit_chain_head SET last_seq = NEW.seq, last_hash = NEW.hash WHERE id = 1;"
APPEND = APPEND_0005.replace(
    MOVE_HEAD,
    """    UPDATE public.audit_chain_head
       SET last_seq = NEW.seq, last_hash = NEW.hash,
           max_ts = greatest(max_ts, NEW.ts),
           max_disorder = greatest(max_disorder, max_ts - NEW.ts)
     WHERE id = 1;""",
)
assert APPEND != APPEND_0005, "0005's trigger no longer ends as this migration expects"

# Over the entries already there: the latest time, and for each entry how much earlier
# it is than the latest before it in seq order (a window over the pk, one pass).
BACKFILL = """
WITH ordered AS (
    SELECT ts, max(ts) OVER (ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
           AS latest_before
      FROM audit_entries
)
UPDATE audit_chain_head
   SET max_ts = (SELECT max(ts) FROM ordered),
       max_disorder = coalesce(
           (SELECT greatest(max(latest_before - ts), interval '0') FROM ordered), interval '0')
 WHERE id = 1
"""


def upgrade() -> None:
    op.add_column(
        "audit_chain_head", sa.Column("max_ts", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "audit_chain_head",
        sa.Column(
            "max_disorder", sa.Interval(), nullable=False, server_default=sa.text("interval '0'")
        ),
    )
    op.execute(APPEND)
    # The head refuses any change but an append's; the owner sets its new columns once.
    op.execute("ALTER TABLE audit_chain_head DISABLE TRIGGER audit_chain_head_guard")
    op.execute(BACKFILL)
    op.execute("ALTER TABLE audit_chain_head ENABLE TRIGGER audit_chain_head_guard")


def downgrade() -> None:
    op.execute(APPEND_0005)
    op.drop_column("audit_chain_head", "max_disorder")
    op.drop_column("audit_chain_head", "max_ts")
