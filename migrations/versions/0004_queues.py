"""queues: inventory drift, coupon leaks and supplier sync (issue 11)

- inventory_items.ledger_total / drift_since, kept by triggers, and the
  partial index of the drift queue;
- the partial index of coupons that claim reservations;
- supplier sync runs that record the page they stopped at and who took over
  their work, and the products a sync stores.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every ledger row adds its quantity to its item's total; the total cannot be
# written any other way (a direct UPDATE keeps the old value), so it is always
# the ledger's sum without a SUM over the ledger per request.
LEDGER_TOTAL = """
CREATE OR REPLACE FUNCTION inventory_ledger_total() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE inventory_items SET ledger_total = ledger_total - OLD.quantity_change
         WHERE sku = OLD.sku;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        UPDATE inventory_items SET ledger_total = ledger_total + NEW.quantity_change
         WHERE sku = NEW.sku;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER inventory_ledger_total
AFTER INSERT OR UPDATE OR DELETE ON inventory_ledger
FOR EACH ROW EXECUTE FUNCTION inventory_ledger_total();
"""

# drift_since: when stock_count and the ledger total started to differ; NULL
# while they agree. An explicit value (the demo seed) is kept while drifting.
DRIFT_SINCE = """
CREATE OR REPLACE FUNCTION inventory_items_drift() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.ledger_total := 0;  -- no ledger row can exist before its item
    ELSIF pg_trigger_depth() < 2 THEN
        NEW.ledger_total := OLD.ledger_total;  -- only the ledger trigger moves it
    END IF;
    IF NEW.stock_count IS DISTINCT FROM NEW.ledger_total THEN
        -- Still drifting: NEW carries the old start unless a statement set one.
        NEW.drift_since := COALESCE(NEW.drift_since, now());
    ELSE
        NEW.drift_since := NULL;
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER inventory_items_drift
BEFORE INSERT OR UPDATE ON inventory_items
FOR EACH ROW EXECUTE FUNCTION inventory_items_drift();
"""


def upgrade() -> None:
    op.add_column(
        "inventory_items",
        sa.Column("ledger_total", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "inventory_items", sa.Column("drift_since", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute(
        """
        UPDATE inventory_items i
           SET ledger_total = l.total
          FROM (SELECT sku, SUM(quantity_change) AS total FROM inventory_ledger GROUP BY sku) l
         WHERE l.sku = i.sku
        """
    )
    op.execute(
        "UPDATE inventory_items SET drift_since = now() WHERE stock_count <> ledger_total"
    )
    op.execute(LEDGER_TOTAL)
    op.execute(DRIFT_SINCE)
    op.create_index(
        "ix_inventory_items_drift",
        "inventory_items",
        ["drift_since", "id"],
        unique=False,
        postgresql_where=sa.text("stock_count <> ledger_total"),
    )
    op.create_index(
        "ix_inventory_reservations_pending_sku",
        "inventory_reservations",
        ["sku"],
        unique=False,
        postgresql_where=sa.text("status = 'reserved'"),
    )
    op.create_index(
        "ix_coupons_reserved",
        "coupons",
        ["code"],
        unique=False,
        postgresql_where=sa.text("reserved_count > 0"),
    )

    op.add_column(
        "supplier_sync_runs",
        sa.Column("start_page", sa.Integer(), server_default=sa.text("1"), nullable=False),
    )
    op.add_column(
        "supplier_sync_runs",
        sa.Column("pages_done", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column("supplier_sync_runs", sa.Column("pages_total", sa.Integer(), nullable=True))
    op.add_column("supplier_sync_runs", sa.Column("failed_page", sa.Integer(), nullable=True))
    op.add_column("supplier_sync_runs", sa.Column("retryable", sa.Boolean(), nullable=True))
    op.add_column(
        "supplier_sync_runs", sa.Column("catalog_version", sa.String(length=64), nullable=True)
    )
    op.add_column(
        "supplier_sync_runs", sa.Column("started_by", sa.String(length=255), nullable=True)
    )
    op.add_column("supplier_sync_runs", sa.Column("resumed_from_id", sa.Integer(), nullable=True))
    op.add_column("supplier_sync_runs", sa.Column("superseded_by_id", sa.Integer(), nullable=True))
    op.add_column(
        "supplier_sync_runs",
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_foreign_key(
        op.f("fk_supplier_sync_runs_resumed_from_id_supplier_sync_runs"),
        "supplier_sync_runs",
        "supplier_sync_runs",
        ["resumed_from_id"],
        ["id"],
    )
    op.create_foreign_key(
        op.f("fk_supplier_sync_runs_superseded_by_id_supplier_sync_runs"),
        "supplier_sync_runs",
        "supplier_sync_runs",
        ["superseded_by_id"],
        ["id"],
    )
    op.create_index(
        "ix_supplier_sync_runs_open_failed",
        "supplier_sync_runs",
        ["started_at", "id"],
        unique=False,
        postgresql_where=sa.text("status = 'failed' AND superseded_by_id IS NULL"),
    )

    op.create_table(
        "supplier_products",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("supplier_id", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("available", sa.Integer(), nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sync_run_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["supplier_id"],
            ["suppliers.id"],
            name=op.f("fk_supplier_products_supplier_id_suppliers"),
        ),
        sa.ForeignKeyConstraint(
            ["sync_run_id"],
            ["supplier_sync_runs.id"],
            name=op.f("fk_supplier_products_sync_run_id_supplier_sync_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_supplier_products")),
        sa.UniqueConstraint("supplier_id", "sku", name=op.f("uq_supplier_products_supplier_id")),
    )


def downgrade() -> None:
    op.drop_table("supplier_products")
    op.drop_index(
        "ix_supplier_sync_runs_open_failed",
        table_name="supplier_sync_runs",
        postgresql_where=sa.text("status = 'failed' AND superseded_by_id IS NULL"),
    )
    op.drop_constraint(
        op.f("fk_supplier_sync_runs_superseded_by_id_supplier_sync_runs"),
        "supplier_sync_runs",
        type_="foreignkey",
    )
    op.drop_constraint(
        op.f("fk_supplier_sync_runs_resumed_from_id_supplier_sync_runs"),
        "supplier_sync_runs",
        type_="foreignkey",
    )
    for column in (
        "superseded_at",
        "superseded_by_id",
        "resumed_from_id",
        "started_by",
        "catalog_version",
        "retryable",
        "failed_page",
        "pages_total",
        "pages_done",
        "start_page",
    ):
        op.drop_column("supplier_sync_runs", column)
    op.drop_index(
        "ix_coupons_reserved", table_name="coupons", postgresql_where=sa.text("reserved_count > 0")
    )
    op.drop_index(
        "ix_inventory_reservations_pending_sku",
        table_name="inventory_reservations",
        postgresql_where=sa.text("status = 'reserved'"),
    )
    op.drop_index(
        "ix_inventory_items_drift",
        table_name="inventory_items",
        postgresql_where=sa.text("stock_count <> ledger_total"),
    )
    op.execute("DROP TRIGGER IF EXISTS inventory_items_drift ON inventory_items")
    op.execute("DROP FUNCTION IF EXISTS inventory_items_drift()")
    op.execute("DROP TRIGGER IF EXISTS inventory_ledger_total ON inventory_ledger")
    op.execute("DROP FUNCTION IF EXISTS inventory_ledger_total()")
    op.drop_column("inventory_items", "drift_since")
    op.drop_column("inventory_items", "ledger_total")
