"""audit roles: appends only through the chain, display columns derived from what was hashed

The application role (see `console.dbroles`) may INSERT audit entries and
nothing else; it cannot lock or move the chain head itself. This migration
gives it the two ways in that it needs, both owned by the migration owner:

- `audit_chain_head_lock()`: a SECURITY DEFINER function that locks the head
  row (FOR UPDATE needs UPDATE privilege, which the app role has not) and
  returns the position to append after;
- a BEFORE INSERT trigger that accepts an entry only at the head (seq is the
  next number, prev_hash the head's hash, hash the SHA-256 of the canonical
  bytes, the canonical form starting with that position), derives every
  display column from the canonical form, and advances the head.

The head itself refuses any other change (an UPDATE not made by the append
trigger, a step other than +1, DELETE, TRUNCATE), so a rewind needs the owner
to drop a trigger first: exactly what the signed checkpoints outside the
database are there to catch.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HEAD_LOCK = """
CREATE OR REPLACE FUNCTION audit_chain_head_lock()
RETURNS TABLE (last_seq bigint, last_hash varchar)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT h.last_seq, h.last_hash FROM public.audit_chain_head h WHERE h.id = 1 FOR UPDATE
$$;
"""

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
    UPDATE public.audit_chain_head SET last_seq = NEW.seq, last_hash = NEW.hash WHERE id = 1;
    RETURN NEW;
END;
$$;
"""

HEAD_GUARD = """
CREATE OR REPLACE FUNCTION audit_chain_head_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Only the append trigger moves the head, one entry at a time.
    IF TG_OP = 'UPDATE' AND pg_trigger_depth() > 1
       AND NEW.id = OLD.id AND NEW.last_seq = OLD.last_seq + 1 THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_chain_head moves only by appending an entry: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
"""


def upgrade() -> None:
    op.execute(HEAD_LOCK)
    op.execute(APPEND)
    op.execute(HEAD_GUARD)
    op.execute(
        "CREATE TRIGGER audit_entries_append BEFORE INSERT ON audit_entries "
        "FOR EACH ROW EXECUTE FUNCTION audit_entries_append()"
    )
    op.execute(
        "CREATE TRIGGER audit_chain_head_guard BEFORE UPDATE OR DELETE ON audit_chain_head "
        "FOR EACH ROW EXECUTE FUNCTION audit_chain_head_guard()"
    )
    op.execute(
        "CREATE TRIGGER audit_chain_head_no_truncate BEFORE TRUNCATE ON audit_chain_head "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_chain_head_guard()"
    )
    # Nobody but the owner and the roles granted by `db create-app-role`.
    for fn in ("audit_chain_head_lock()", "audit_entries_append()", "audit_chain_head_guard()"):
        op.execute(f"REVOKE ALL ON FUNCTION {fn} FROM PUBLIC")
    for table in ("audit_entries", "audit_chain_head", "audit_checkpoints"):
        op.execute(f"REVOKE ALL ON {table} FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS audit_chain_head_no_truncate ON audit_chain_head")
    op.execute("DROP TRIGGER IF EXISTS audit_chain_head_guard ON audit_chain_head")
    op.execute("DROP TRIGGER IF EXISTS audit_entries_append ON audit_entries")
    op.execute("DROP FUNCTION IF EXISTS audit_chain_head_guard()")
    op.execute("DROP FUNCTION IF EXISTS audit_entries_append()")
    op.execute("DROP FUNCTION IF EXISTS audit_chain_head_lock()")
