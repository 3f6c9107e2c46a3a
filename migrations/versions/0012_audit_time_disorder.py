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

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The append trigger of 0005 with one change: the last statement also moves max_ts and
# max_disorder (the right-hand sides read the head before this entry).
APPEND = r"""
CREATE OR REPLACE FUNCTION audit_entries_append() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    head record;
    body jsonb;
    position text;
BEGIN
    SELECT h.last_seq, h.last_hash INTO head
      FROM public.audit_chain_head h WHERE h.id = 1 FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'audit chain head is missing' USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.seq IS DISTINCT FROM head.last_seq + 1
       OR NEW.prev_hash IS DISTINCT FROM head.last_hash THEN
        RAISE EXCEPTION 'audit entry % is not at the head of the chain (head is %)',
            NEW.seq, head.last_seq USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.hash IS DISTINCT FROM encode(sha256(convert_to(NEW.canonical, 'UTF8')), 'hex') THEN
        RAISE EXCEPTION 'audit entry %: hash is not the SHA-256 of its canonical form', NEW.seq
            USING ERRCODE = 'check_violation';
    END IF;
    position := '{"_prev_hash":"' || NEW.prev_hash || '","_seq":' || NEW.seq::text || ',';
    IF left(NEW.canonical, length(position)) IS DISTINCT FROM position THEN
        RAISE EXCEPTION 'audit entry %: canonical form does not start with its position', NEW.seq
            USING ERRCODE = 'check_violation';
    END IF;
    body := NEW.canonical::jsonb;
    IF body->>'_seq' IS DISTINCT FROM NEW.seq::text
       OR body->>'_prev_hash' IS DISTINCT FROM NEW.prev_hash THEN
        RAISE EXCEPTION 'audit entry %: canonical form names another position', NEW.seq
            USING ERRCODE = 'check_violation';
    END IF;
    -- What the pages and exports show is what was hashed.
    NEW.ts := (body->>'ts')::timestamptz;
    NEW.actor_sub := body->'actor'->>'sub';
    NEW.actor_email := body->'actor'->>'email';
    NEW.actor_roles := coalesce(body->'actor'->'roles', '[]'::jsonb);
    NEW.action := body->>'action';
    NEW.target_type := body->'target'->>'type';
    NEW.target_id := body->'target'->>'id';
    NEW.outcome := body->>'outcome';
    NEW.reason := body->>'reason';
    NEW.ticket := body->>'ticket';
    NEW.request_id := body->'request'->>'id';
    NEW.ip := body->'request'->>'ip';
    NEW.details := jsonb_build_object(
        'before', body->'before',
        'after', body->'after',
        'params', body->'params',
        'extra', body->'details',
        'user_agent', body->'request'->'user_agent'
    );
    UPDATE public.audit_chain_head
       SET last_seq = NEW.seq, last_hash = NEW.hash,
           max_ts = greatest(max_ts, NEW.ts),
           max_disorder = greatest(max_disorder, max_ts - NEW.ts)
     WHERE id = 1;
    RETURN NEW;
END;
$$;
"""

APPEND_0005 = APPEND.replace(
    """
       SET last_seq = NEW.seq, last_hash = NEW.hash,
           max_ts = greatest(max_ts, NEW.ts),
           max_disorder = greatest(max_disorder, max_ts - NEW.ts)
     WHERE id = 1;""",
    " SET last_seq = NEW.seq, last_hash = NEW.hash WHERE id = 1;",
)
assert APPEND_0005 != APPEND

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
