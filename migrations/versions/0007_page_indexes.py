"""pages at scale: stuck facts on orders, per-reason indexes, audit actor email, job runs

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 01:10:00

The stuck-orders condition is an OR of five predicates, two of them EXISTS
subqueries on other tables, which no index on `orders` can serve: the count
was a sequential scan of all orders. Two facts about an order's children are
now columns of the order, kept by triggers whoever writes (like the inventory
ledger total of 0004):

- `holds_stock`: the order has an inventory reservation still `reserved`;
- `payment_succeeded`: the order has a payment that `succeeded`.

Each trigger locks the order row before it re-reads the children, so two
transactions changing two reservations of one order cannot both miss the
other's change (READ COMMITTED: the re-read after the lock sees the first's
commit). With them every stuck reason is a predicate on `orders` alone, and
gets a partial index keyed on the column the page sorts by.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0009"  # after 0009 (merged first)
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STUCK_FACTS = """
CREATE OR REPLACE FUNCTION orders_holds_stock() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.order_id IS NOT NULL
       AND NEW.status = 'reserved' THEN
        UPDATE orders SET holds_stock = true WHERE id = NEW.order_id AND NOT holds_stock;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.order_id IS NOT NULL AND OLD.status = 'reserved'
       AND (TG_OP = 'DELETE' OR NEW.status <> 'reserved'
            OR NEW.order_id IS DISTINCT FROM OLD.order_id) THEN
        PERFORM 1 FROM orders WHERE id = OLD.order_id FOR NO KEY UPDATE;
        UPDATE orders SET holds_stock = false
         WHERE id = OLD.order_id AND holds_stock
           AND NOT EXISTS (SELECT 1 FROM inventory_reservations
                            WHERE order_id = OLD.order_id AND status = 'reserved');
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER orders_holds_stock
AFTER INSERT OR DELETE OR UPDATE OF status, order_id ON inventory_reservations
FOR EACH ROW EXECUTE FUNCTION orders_holds_stock();

CREATE OR REPLACE FUNCTION orders_payment_succeeded() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.order_id IS NOT NULL
       AND NEW.status = 'succeeded' THEN
        UPDATE orders SET payment_succeeded = true
         WHERE id = NEW.order_id AND NOT payment_succeeded;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.order_id IS NOT NULL AND OLD.status = 'succeeded'
       AND (TG_OP = 'DELETE' OR NEW.status <> 'succeeded'
            OR NEW.order_id IS DISTINCT FROM OLD.order_id) THEN
        PERFORM 1 FROM orders WHERE id = OLD.order_id FOR NO KEY UPDATE;
        UPDATE orders SET payment_succeeded = false
         WHERE id = OLD.order_id AND payment_succeeded
           AND NOT EXISTS (SELECT 1 FROM payments
                            WHERE order_id = OLD.order_id AND status = 'succeeded');
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER orders_payment_succeeded
AFTER INSERT OR DELETE OR UPDATE OF status, order_id ON payments
FOR EACH ROW EXECUTE FUNCTION orders_payment_succeeded();
"""

# The five reasons, as in console/orders/queries.py (STUCK_INDEX_PREDICATES); the
# webhook reason without its grace window, which depends on the time of the query.
REASONS = {
    "amount_mismatch": "amount_mismatch AND status NOT IN ('refunded', 'cancelled')",
    "webhook_unprocessed": "status = 'paid' AND webhook_processed_at IS NULL",
    "reservation_unconfirmed": "status IN ('paid', 'confirmed') AND holds_stock",
    "not_forwarded": "status = 'processing' AND supplier_forwarded_at IS NULL",
    "payment_pending_order": "status = 'pending' AND payment_succeeded",
}
ANY_REASON = " OR ".join(f"({p})" for p in REASONS.values())
SORTS = {"created": "created_at", "amount": "amount", "updated": "updated_at"}


def upgrade() -> None:
    op.add_column(
        "orders",
        sa.Column("holds_stock", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column(
        "orders",
        sa.Column(
            "payment_succeeded", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
    )
    op.execute(
        "UPDATE orders o SET holds_stock = true WHERE EXISTS (SELECT 1 FROM "
        "inventory_reservations r WHERE r.order_id = o.id AND r.status = 'reserved')"
    )
    op.execute(
        "UPDATE orders o SET payment_succeeded = true WHERE EXISTS (SELECT 1 FROM "
        "payments p WHERE p.order_id = o.id AND p.status = 'succeeded')"
    )
    op.execute(STUCK_FACTS)
    for key, column in SORTS.items():
        op.create_index(
            f"ix_orders_stuck_{key}",
            "orders",
            [column, "id"],
            postgresql_where=sa.text(ANY_REASON),
        )
    for reason, predicate in REASONS.items():
        op.create_index(
            f"ix_orders_stuck_{reason}_created",
            "orders",
            ["created_at", "id"],
            postgresql_where=sa.text(predicate),
        )
    # Row estimates for the stuck predicates: their columns are correlated (a `paid`
    # order's webhook is mostly processed), and multiplied as independent the
    # planner expects a few rows, sorts them, and leaves the index in page order.
    op.execute(
        "CREATE STATISTICS orders_stuck_facts (mcv) ON status, (webhook_processed_at IS NULL), "
        "(supplier_forwarded_at IS NULL), amount_mismatch, holds_stock, payment_succeeded "
        "FROM orders"
    )
    op.execute("ANALYZE orders")
    # The audit actor filter matches the e-mail or the subject: one index each.
    op.create_index("ix_audit_entries_actor_email_seq", "audit_entries", ["actor_email", "seq"])
    # A time window's first and last seq, from one index-only range (console/audit/views.py).
    op.create_index("ix_audit_entries_ts_seq", "audit_entries", ["ts", "seq"])
    # The jobs' last run and last success, one index descent per job (not a scan of years).
    op.create_index("ix_job_runs_job_id", "job_runs", ["job", "id"])
    op.create_index(
        "ix_job_runs_job_succeeded",
        "job_runs",
        ["job", "finished_at"],
        postgresql_where=sa.text("status = 'succeeded'"),
    )


def downgrade() -> None:
    op.drop_index("ix_job_runs_job_succeeded", table_name="job_runs")
    op.drop_index("ix_job_runs_job_id", table_name="job_runs")
    op.drop_index("ix_audit_entries_ts_seq", table_name="audit_entries")
    op.drop_index("ix_audit_entries_actor_email_seq", table_name="audit_entries")
    op.execute("DROP STATISTICS IF EXISTS orders_stuck_facts")
    for reason in REASONS:
        op.drop_index(f"ix_orders_stuck_{reason}_created", table_name="orders")
    for key in SORTS:
        op.drop_index(f"ix_orders_stuck_{key}", table_name="orders")
    op.execute("DROP TRIGGER IF EXISTS orders_payment_succeeded ON payments")
    op.execute("DROP FUNCTION IF EXISTS orders_payment_succeeded()")
    op.execute("DROP TRIGGER IF EXISTS orders_holds_stock ON inventory_reservations")
    op.execute("DROP FUNCTION IF EXISTS orders_holds_stock()")
    op.drop_column("orders", "payment_succeeded")
    op.drop_column("orders", "holds_stock")
