"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 03:32:49.821141
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('approvals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('payload_hash', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Enum('pending', 'approved', 'rejected', 'voided', 'executed', name='approvalstatus', native_enum=False, length=32), nullable=False),
    sa.Column('requested_by_sub', sa.String(length=255), nullable=False),
    sa.Column('requested_by_email', sa.String(length=320), nullable=False),
    sa.Column('request_reason', sa.Text(), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_by_sub', sa.String(length=255), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decision_reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_approvals'))
    )
    op.create_index('ix_approvals_pending', 'approvals', ['requested_at', 'id'], unique=False, postgresql_where=sa.text("status = 'pending'"))
    op.create_table('audit_chain_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('last_seq', sa.BigInteger(), nullable=False),
    sa.Column('last_hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_chain_head'))
    )
    op.create_table('audit_checkpoints',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('purged_through_seq', sa.BigInteger(), nullable=False),
    sa.Column('purged_through_hash', sa.String(length=64), nullable=False),
    sa.Column('purged_count', sa.BigInteger(), nullable=False),
    sa.Column('statement', sa.Text(), nullable=False),
    sa.Column('signature', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_checkpoints'))
    )
    op.create_table('audit_entries',
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor_sub', sa.String(length=255), nullable=True),
    sa.Column('actor_email', sa.String(length=320), nullable=True),
    sa.Column('actor_roles', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('action', sa.String(length=128), nullable=False),
    sa.Column('target_type', sa.String(length=64), nullable=True),
    sa.Column('target_id', sa.String(length=128), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('ticket', sa.String(length=128), nullable=True),
    sa.Column('request_id', sa.String(length=64), nullable=True),
    sa.Column('ip', sa.String(length=64), nullable=True),
    sa.Column('details', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('canonical', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_entries')),
    sa.UniqueConstraint('hash', name=op.f('uq_audit_entries_hash'))
    )
    op.create_index('ix_audit_entries_action_seq', 'audit_entries', ['action', 'seq'], unique=False)
    op.create_index('ix_audit_entries_actor_seq', 'audit_entries', ['actor_sub', 'seq'], unique=False)
    op.create_index('ix_audit_entries_outcome_seq', 'audit_entries', ['outcome', 'seq'], unique=False)
    op.create_index('ix_audit_entries_target_seq', 'audit_entries', ['target_type', 'target_id', 'seq'], unique=False)
    op.create_index('ix_audit_entries_ts', 'audit_entries', ['ts'], unique=False)
    op.create_table('coupons',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('max_redemptions', sa.Integer(), nullable=True),
    sa.Column('redeemed_count', sa.Integer(), nullable=False),
    sa.Column('reserved_count', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coupons')),
    sa.UniqueConstraint('code', name=op.f('uq_coupons_code'))
    )
    op.create_table('idempotency_records',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('action', sa.String(length=128), nullable=False),
    sa.Column('target_id', sa.String(length=128), nullable=False),
    sa.Column('actor_sub', sa.String(length=255), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('message', sa.String(length=1000), nullable=False),
    sa.Column('result', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('audit_seq', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_idempotency_records')),
    sa.UniqueConstraint('key', name=op.f('uq_idempotency_records_key'))
    )
    op.create_table('inventory_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('stock_count', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inventory_items')),
    sa.UniqueConstraint('sku', name=op.f('uq_inventory_items_sku'))
    )
    op.create_table('job_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Enum('running', 'succeeded', 'failed', name='jobstatus', native_enum=False, length=32), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('scanned', sa.Integer(), nullable=False),
    sa.Column('acted', sa.Integer(), nullable=False),
    sa.Column('errors', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('details', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_runs'))
    )
    op.create_index('ix_job_runs_job_started', 'job_runs', ['job', 'started_at', 'id'], unique=False)
    op.create_table('money_movements',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('transfer', 'refund', name='movementkind', native_enum=False, length=32), nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=False),
    sa.Column('target_type', sa.String(length=32), nullable=False),
    sa.Column('target_id', sa.String(length=64), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('status', sa.Enum('in_flight', 'succeeded', 'failed', name='movementstatus', native_enum=False, length=32), nullable=False),
    sa.Column('stripe_object_id', sa.String(length=255), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('calls', sa.Integer(), nullable=False),
    sa.Column('actor_sub', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_money_movements')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_money_movements_idempotency_key'))
    )
    op.create_index('ix_money_movements_in_flight', 'money_movements', ['created_at', 'id'], unique=False, postgresql_where=sa.text("status = 'in_flight'"))
    op.create_index('ix_money_movements_target', 'money_movements', ['target_type', 'target_id'], unique=False)
    op.create_table('reconciliation_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('filters', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('status', sa.Enum('running', 'succeeded', 'failed', name='runstatus', native_enum=False, length=32), nullable=False),
    sa.Column('started_by_sub', sa.String(length=255), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('scanned_stripe', sa.Integer(), nullable=False),
    sa.Column('scanned_local', sa.Integer(), nullable=False),
    sa.Column('stripe_calls', sa.Integer(), nullable=False),
    sa.Column('findings_new', sa.Integer(), nullable=False),
    sa.Column('findings_seen', sa.Integer(), nullable=False),
    sa.Column('findings_closed', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reconciliation_runs'))
    )
    op.create_index('ix_reconciliation_runs_started_id', 'reconciliation_runs', ['started_at', 'id'], unique=False)
    op.create_table('sellers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('stripe_account_id', sa.String(length=255), nullable=False),
    sa.Column('transfers_enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sellers')),
    sa.UniqueConstraint('email', name=op.f('uq_sellers_email'))
    )
    op.create_index(op.f('ix_sellers_stripe_account_id'), 'sellers', ['stripe_account_id'], unique=False)
    op.create_table('suppliers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_suppliers')),
    sa.UniqueConstraint('name', name=op.f('uq_suppliers_name'))
    )
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sub', sa.String(length=255), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('roles', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('groups', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_login_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('sub', name=op.f('uq_users_sub'))
    )
    op.create_table('webhook_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.String(length=255), nullable=False),
    sa.Column('type', sa.String(length=128), nullable=False),
    sa.Column('api_version', sa.String(length=32), nullable=True),
    sa.Column('livemode', sa.Boolean(), nullable=False),
    sa.Column('object_id', sa.String(length=255), nullable=True),
    sa.Column('raw_body', sa.Text(), nullable=False),
    sa.Column('status', sa.Enum('received', 'processed', 'failed', 'duplicate', 'ignored', name='webhookstatus', native_enum=False, length=32), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('deliveries', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('stripe_created_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_events')),
    sa.UniqueConstraint('event_id', name=op.f('uq_webhook_events_event_id'))
    )
    op.create_index(op.f('ix_webhook_events_object_id'), 'webhook_events', ['object_id'], unique=False)
    op.create_index('ix_webhook_events_received_id', 'webhook_events', ['received_at', 'id'], unique=False)
    op.create_index(op.f('ix_webhook_events_type'), 'webhook_events', ['type'], unique=False)
    op.create_index('ix_webhook_events_unprocessed', 'webhook_events', ['received_at', 'id'], unique=False, postgresql_where=sa.text("processed_at IS NULL AND status IN ('received', 'failed')"))
    op.create_table('webhook_rejections',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.String(length=255), nullable=False),
    sa.Column('source_ip', sa.String(length=64), nullable=True),
    sa.Column('body_sha256', sa.String(length=64), nullable=False),
    sa.Column('body_size', sa.Integer(), nullable=False),
    sa.Column('claimed_event_id', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_rejections'))
    )
    op.create_index('ix_webhook_rejections_received_id', 'webhook_rejections', ['received_at', 'id'], unique=False)
    op.create_table('inventory_ledger',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('quantity_change', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Enum('restock', 'sale', 'return', 'manual_correction', name='ledgerreason', native_enum=False, length=32), nullable=False),
    sa.Column('reference_id', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['sku'], ['inventory_items.sku'], name=op.f('fk_inventory_ledger_sku_inventory_items')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inventory_ledger'))
    )
    op.create_index('ix_inventory_ledger_sku_id', 'inventory_ledger', ['sku', 'id'], unique=False)
    op.create_table('login_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('auth_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('end_reason', sa.String(length=32), nullable=True),
    sa.Column('ip', sa.String(length=64), nullable=True),
    sa.Column('user_agent', sa.String(length=512), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_login_sessions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_sessions')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_login_sessions_token_hash'))
    )
    op.create_index('ix_login_sessions_user_active', 'login_sessions', ['user_id', 'ended_at'], unique=False)
    op.create_table('orders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Enum('pending', 'paid', 'confirmed', 'processing', 'fulfilled', 'delivered', 'completed', 'cancelled', 'refunded', name='orderstatus', native_enum=False, length=32), nullable=False),
    sa.Column('customer_email', sa.String(length=320), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('amount_refunded', sa.Integer(), nullable=False),
    sa.Column('payment_intent_id', sa.String(length=255), nullable=True),
    sa.Column('checkout_session_id', sa.String(length=255), nullable=True),
    sa.Column('listing_id', sa.String(length=64), nullable=True),
    sa.Column('seller_email', sa.String(length=320), nullable=True),
    sa.Column('amount_mismatch', sa.Boolean(), nullable=False),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('webhook_processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('supplier_id', sa.Integer(), nullable=True),
    sa.Column('supplier_forwarded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('supplier_order_ref', sa.String(length=128), nullable=True),
    sa.Column('stripe_transfer_id', sa.String(length=255), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['supplier_id'], ['suppliers.id'], name=op.f('fk_orders_supplier_id_suppliers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_orders')),
    sa.UniqueConstraint('external_id', name=op.f('uq_orders_external_id'))
    )
    op.create_index('ix_orders_amount_mismatch', 'orders', ['updated_at', 'id'], unique=False, postgresql_where=sa.text('amount_mismatch'))
    op.create_index(op.f('ix_orders_checkout_session_id'), 'orders', ['checkout_session_id'], unique=False)
    op.create_index('ix_orders_created_id', 'orders', ['created_at', 'id'], unique=False)
    op.create_index(op.f('ix_orders_customer_email'), 'orders', ['customer_email'], unique=False)
    op.create_index(op.f('ix_orders_listing_id'), 'orders', ['listing_id'], unique=False)
    op.create_index(op.f('ix_orders_payment_intent_id'), 'orders', ['payment_intent_id'], unique=False)
    op.create_index('ix_orders_stuck_processing', 'orders', ['updated_at', 'id'], unique=False, postgresql_where=sa.text("status = 'processing' AND supplier_forwarded_at IS NULL"))
    op.create_index('ix_orders_stuck_unprocessed', 'orders', ['paid_at', 'id'], unique=False, postgresql_where=sa.text("status = 'paid' AND webhook_processed_at IS NULL"))
    op.create_table('supplier_sync_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('supplier_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('running', 'succeeded', 'failed', name='syncstatus', native_enum=False, length=32), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('items_synced', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['supplier_id'], ['suppliers.id'], name=op.f('fk_supplier_sync_runs_supplier_id_suppliers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_supplier_sync_runs'))
    )
    op.create_index('ix_supplier_sync_runs_started_id', 'supplier_sync_runs', ['started_at', 'id'], unique=False)
    op.create_index(op.f('ix_supplier_sync_runs_supplier_id'), 'supplier_sync_runs', ['supplier_id'], unique=False)
    op.create_table('coupon_reservations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('coupon_id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.Enum('reserved', 'redeemed', 'expired', 'released', name='couponreservationstatus', native_enum=False, length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['coupon_id'], ['coupons.id'], name=op.f('fk_coupon_reservations_coupon_id_coupons')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_coupon_reservations_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coupon_reservations'))
    )
    op.create_index(op.f('ix_coupon_reservations_coupon_id'), 'coupon_reservations', ['coupon_id'], unique=False)
    op.create_index('ix_coupon_reservations_leaks', 'coupon_reservations', ['expires_at', 'id'], unique=False, postgresql_where=sa.text("status = 'reserved'"))
    op.create_table('inventory_reservations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('reserved', 'confirmed', 'released', 'expired', name='reservationstatus', native_enum=False, length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_inventory_reservations_order_id_orders')),
    sa.ForeignKeyConstraint(['sku'], ['inventory_items.sku'], name=op.f('fk_inventory_reservations_sku_inventory_items')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inventory_reservations')),
    sa.UniqueConstraint('external_id', name=op.f('uq_inventory_reservations_external_id'))
    )
    op.create_index(op.f('ix_inventory_reservations_order_id'), 'inventory_reservations', ['order_id'], unique=False)
    op.create_index('ix_inventory_reservations_unconfirmed', 'inventory_reservations', ['order_id'], unique=False, postgresql_where=sa.text("status = 'reserved'"))
    op.create_table('invoices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('status', sa.Enum('draft', 'generated', 'transmitted', 'failed', 'void', name='invoicestatus', native_enum=False, length=32), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('external_ref', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_invoices_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invoices')),
    sa.UniqueConstraint('external_id', name=op.f('uq_invoices_external_id'))
    )
    op.create_index('ix_invoices_attention', 'invoices', ['updated_at', 'id'], unique=False, postgresql_where=sa.text("status IN ('draft', 'generated', 'failed')"))
    op.create_index('ix_invoices_due', 'invoices', ['next_attempt_at', 'id'], unique=False, postgresql_where=sa.text("status IN ('draft', 'generated') AND next_attempt_at IS NOT NULL"))
    op.create_index(op.f('ix_invoices_order_id'), 'invoices', ['order_id'], unique=False)
    op.create_table('order_lines',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('unit_amount', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_order_lines_order_id_orders'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_order_lines'))
    )
    op.create_index(op.f('ix_order_lines_order_id'), 'order_lines', ['order_id'], unique=False)
    op.create_table('order_notes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('author_sub', sa.String(length=255), nullable=False),
    sa.Column('author_email', sa.String(length=320), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_order_notes_order_id_orders'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_order_notes'))
    )
    op.create_index(op.f('ix_order_notes_order_id'), 'order_notes', ['order_id'], unique=False)
    op.create_table('payments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('payment_intent_id', sa.String(length=255), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('charge_id', sa.String(length=255), nullable=True),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('status', sa.Enum('requires_payment_method', 'processing', 'succeeded', 'failed', 'canceled', 'refunded', 'partially_refunded', name='paymentstatus', native_enum=False, length=32), nullable=False),
    sa.Column('amount_refunded', sa.Integer(), nullable=False),
    sa.Column('verified_amount', sa.Integer(), nullable=True),
    sa.Column('verified_currency', sa.String(length=3), nullable=True),
    sa.Column('verified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failure_message', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_payments_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payments')),
    sa.UniqueConstraint('payment_intent_id', name=op.f('uq_payments_payment_intent_id'))
    )
    op.create_index(op.f('ix_payments_order_id'), 'payments', ['order_id'], unique=False)
    op.create_table('reconciliation_findings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('fingerprint', sa.String(length=255), nullable=False),
    sa.Column('type', sa.Enum('stripe_paid_no_order', 'order_paid_no_stripe', 'transfer_order_not_completed', 'amount_mismatch', 'refund_not_reflected', 'refund_missing_at_stripe', 'event_not_received', name='findingtype', native_enum=False, length=32), nullable=False),
    sa.Column('severity', sa.Enum('critical', 'high', 'medium', 'warning', name='severity', native_enum=False, length=32), nullable=False),
    sa.Column('status', sa.Enum('open', 'fixed', 'dismissed', 'auto_closed', name='findingstatus', native_enum=False, length=32), nullable=False),
    sa.Column('explanation', sa.Text(), nullable=False),
    sa.Column('suggested_action', sa.String(length=64), nullable=True),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('payment_intent_id', sa.String(length=255), nullable=True),
    sa.Column('transfer_id', sa.String(length=255), nullable=True),
    sa.Column('details', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('first_seen_run_id', sa.Integer(), nullable=True),
    sa.Column('last_seen_run_id', sa.Integer(), nullable=True),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_by_sub', sa.String(length=255), nullable=True),
    sa.Column('close_reason', sa.Text(), nullable=True),
    sa.Column('close_audit_seq', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['first_seen_run_id'], ['reconciliation_runs.id'], name=op.f('fk_reconciliation_findings_first_seen_run_id_reconciliation_runs')),
    sa.ForeignKeyConstraint(['last_seen_run_id'], ['reconciliation_runs.id'], name=op.f('fk_reconciliation_findings_last_seen_run_id_reconciliation_runs')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_reconciliation_findings_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reconciliation_findings')),
    sa.UniqueConstraint('fingerprint', name=op.f('uq_reconciliation_findings_fingerprint'))
    )
    op.create_index('ix_reconciliation_findings_open', 'reconciliation_findings', ['severity', 'id'], unique=False, postgresql_where=sa.text("status = 'open'"))
    op.create_index(op.f('ix_reconciliation_findings_order_id'), 'reconciliation_findings', ['order_id'], unique=False)
    op.create_index(op.f('ix_reconciliation_findings_payment_intent_id'), 'reconciliation_findings', ['payment_intent_id'], unique=False)
    op.create_table('seller_payouts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('seller_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('destination_account', sa.String(length=255), nullable=False),
    sa.Column('status', sa.Enum('held', 'eligible', 'pending_approval', 'approved', 'released', 'failed', name='payoutstatus', native_enum=False, length=32), nullable=False),
    sa.Column('protected', sa.Boolean(), nullable=False),
    sa.Column('admin_hold', sa.Boolean(), nullable=False),
    sa.Column('hold_reason', sa.Text(), nullable=True),
    sa.Column('dispute_status', sa.Enum('none', 'open', 'won', 'lost', name='disputestatus', native_enum=False, length=32), nullable=False),
    sa.Column('dispute_opened_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('protection_ends_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('delivery_confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('stripe_transfer_id', sa.String(length=255), nullable=True),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_seller_payouts_order_id_orders')),
    sa.ForeignKeyConstraint(['seller_id'], ['sellers.id'], name=op.f('fk_seller_payouts_seller_id_sellers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_seller_payouts')),
    sa.UniqueConstraint('external_id', name=op.f('uq_seller_payouts_external_id'))
    )
    op.create_index(op.f('ix_seller_payouts_order_id'), 'seller_payouts', ['order_id'], unique=False)
    op.create_index('ix_seller_payouts_ready', 'seller_payouts', ['protection_ends_at', 'id'], unique=False, postgresql_where=sa.text("status IN ('held', 'eligible') AND NOT admin_hold AND dispute_status <> 'open'"))
    op.create_index(op.f('ix_seller_payouts_seller_id'), 'seller_payouts', ['seller_id'], unique=False)
    op.create_index('ix_seller_payouts_status_id', 'seller_payouts', ['status', 'id'], unique=False)
    op.create_table('approval_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('approval_id', sa.Integer(), nullable=False),
    sa.Column('payout_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('destination_account', sa.String(length=255), nullable=False),
    sa.Column('result', sa.String(length=32), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['approval_id'], ['approvals.id'], name=op.f('fk_approval_items_approval_id_approvals')),
    sa.ForeignKeyConstraint(['payout_id'], ['seller_payouts.id'], name=op.f('fk_approval_items_payout_id_seller_payouts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_approval_items'))
    )
    op.create_index(op.f('ix_approval_items_approval_id'), 'approval_items', ['approval_id'], unique=False)
    op.create_index(op.f('ix_approval_items_payout_id'), 'approval_items', ['payout_id'], unique=False)
    op.create_table('invoice_transmissions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('invoice_id', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('request_summary', sa.Text(), nullable=False),
    sa.Column('response_status', sa.Integer(), nullable=True),
    sa.Column('succeeded', sa.Boolean(), nullable=False),
    sa.Column('error_payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_invoice_transmissions_invoice_id_invoices')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invoice_transmissions'))
    )
    op.create_index(op.f('ix_invoice_transmissions_invoice_id'), 'invoice_transmissions', ['invoice_id'], unique=False)

    # The chain starts at the genesis hash; appends lock and move this row.
    op.execute(
        "INSERT INTO audit_chain_head (id, last_seq, last_hash) VALUES (1, 0, '"
        + "0" * 64
        + "')"
    )
    if op.get_bind().dialect.name == "postgresql":
        # Append-only: the database itself refuses to change history.
        op.execute(
            """
            CREATE FUNCTION audit_entries_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit_entries is append-only: % refused', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END;
            $$;
            """
        )
        op.execute(
            "CREATE TRIGGER audit_entries_no_update_delete BEFORE UPDATE OR DELETE "
            "ON audit_entries FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE "
            "ON audit_entries FOR EACH STATEMENT EXECUTE FUNCTION audit_entries_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_entries_no_truncate ON audit_entries")
        op.execute("DROP TRIGGER IF EXISTS audit_entries_no_update_delete ON audit_entries")
        op.execute("DROP FUNCTION IF EXISTS audit_entries_append_only()")
    op.drop_index(op.f('ix_invoice_transmissions_invoice_id'), table_name='invoice_transmissions')
    op.drop_table('invoice_transmissions')
    op.drop_index(op.f('ix_approval_items_payout_id'), table_name='approval_items')
    op.drop_index(op.f('ix_approval_items_approval_id'), table_name='approval_items')
    op.drop_table('approval_items')
    op.drop_index('ix_seller_payouts_status_id', table_name='seller_payouts')
    op.drop_index(op.f('ix_seller_payouts_seller_id'), table_name='seller_payouts')
    op.drop_index('ix_seller_payouts_ready', table_name='seller_payouts', postgresql_where=sa.text("status IN ('held', 'eligible') AND NOT admin_hold AND dispute_status <> 'open'"))
    op.drop_index(op.f('ix_seller_payouts_order_id'), table_name='seller_payouts')
    op.drop_table('seller_payouts')
    op.drop_index(op.f('ix_reconciliation_findings_payment_intent_id'), table_name='reconciliation_findings')
    op.drop_index(op.f('ix_reconciliation_findings_order_id'), table_name='reconciliation_findings')
    op.drop_index('ix_reconciliation_findings_open', table_name='reconciliation_findings', postgresql_where=sa.text("status = 'open'"))
    op.drop_table('reconciliation_findings')
    op.drop_index(op.f('ix_payments_order_id'), table_name='payments')
    op.drop_table('payments')
    op.drop_index(op.f('ix_order_notes_order_id'), table_name='order_notes')
    op.drop_table('order_notes')
    op.drop_index(op.f('ix_order_lines_order_id'), table_name='order_lines')
    op.drop_table('order_lines')
    op.drop_index(op.f('ix_invoices_order_id'), table_name='invoices')
    op.drop_index('ix_invoices_due', table_name='invoices', postgresql_where=sa.text("status IN ('draft', 'generated') AND next_attempt_at IS NOT NULL"))
    op.drop_index('ix_invoices_attention', table_name='invoices', postgresql_where=sa.text("status IN ('draft', 'generated', 'failed')"))
    op.drop_table('invoices')
    op.drop_index('ix_inventory_reservations_unconfirmed', table_name='inventory_reservations', postgresql_where=sa.text("status = 'reserved'"))
    op.drop_index(op.f('ix_inventory_reservations_order_id'), table_name='inventory_reservations')
    op.drop_table('inventory_reservations')
    op.drop_index('ix_coupon_reservations_leaks', table_name='coupon_reservations', postgresql_where=sa.text("status = 'reserved'"))
    op.drop_index(op.f('ix_coupon_reservations_coupon_id'), table_name='coupon_reservations')
    op.drop_table('coupon_reservations')
    op.drop_index(op.f('ix_supplier_sync_runs_supplier_id'), table_name='supplier_sync_runs')
    op.drop_index('ix_supplier_sync_runs_started_id', table_name='supplier_sync_runs')
    op.drop_table('supplier_sync_runs')
    op.drop_index('ix_orders_stuck_unprocessed', table_name='orders', postgresql_where=sa.text("status = 'paid' AND webhook_processed_at IS NULL"))
    op.drop_index('ix_orders_stuck_processing', table_name='orders', postgresql_where=sa.text("status = 'processing' AND supplier_forwarded_at IS NULL"))
    op.drop_index(op.f('ix_orders_payment_intent_id'), table_name='orders')
    op.drop_index(op.f('ix_orders_listing_id'), table_name='orders')
    op.drop_index(op.f('ix_orders_customer_email'), table_name='orders')
    op.drop_index('ix_orders_created_id', table_name='orders')
    op.drop_index(op.f('ix_orders_checkout_session_id'), table_name='orders')
    op.drop_index('ix_orders_amount_mismatch', table_name='orders', postgresql_where=sa.text('amount_mismatch'))
    op.drop_table('orders')
    op.drop_index('ix_login_sessions_user_active', table_name='login_sessions')
    op.drop_table('login_sessions')
    op.drop_index('ix_inventory_ledger_sku_id', table_name='inventory_ledger')
    op.drop_table('inventory_ledger')
    op.drop_index('ix_webhook_rejections_received_id', table_name='webhook_rejections')
    op.drop_table('webhook_rejections')
    op.drop_index('ix_webhook_events_unprocessed', table_name='webhook_events', postgresql_where=sa.text("processed_at IS NULL AND status IN ('received', 'failed')"))
    op.drop_index(op.f('ix_webhook_events_type'), table_name='webhook_events')
    op.drop_index('ix_webhook_events_received_id', table_name='webhook_events')
    op.drop_index(op.f('ix_webhook_events_object_id'), table_name='webhook_events')
    op.drop_table('webhook_events')
    op.drop_table('users')
    op.drop_table('suppliers')
    op.drop_index(op.f('ix_sellers_stripe_account_id'), table_name='sellers')
    op.drop_table('sellers')
    op.drop_index('ix_reconciliation_runs_started_id', table_name='reconciliation_runs')
    op.drop_table('reconciliation_runs')
    op.drop_index('ix_money_movements_target', table_name='money_movements')
    op.drop_index('ix_money_movements_in_flight', table_name='money_movements', postgresql_where=sa.text("status = 'in_flight'"))
    op.drop_table('money_movements')
    op.drop_index('ix_job_runs_job_started', table_name='job_runs')
    op.drop_table('job_runs')
    op.drop_table('inventory_items')
    op.drop_table('idempotency_records')
    op.drop_table('coupons')
    op.drop_index('ix_audit_entries_ts', table_name='audit_entries')
    op.drop_index('ix_audit_entries_target_seq', table_name='audit_entries')
    op.drop_index('ix_audit_entries_outcome_seq', table_name='audit_entries')
    op.drop_index('ix_audit_entries_actor_seq', table_name='audit_entries')
    op.drop_index('ix_audit_entries_action_seq', table_name='audit_entries')
    op.drop_table('audit_entries')
    op.drop_table('audit_checkpoints')
    op.drop_table('audit_chain_head')
    op.drop_index('ix_approvals_pending', table_name='approvals', postgresql_where=sa.text("status = 'pending'"))
    op.drop_table('approvals')
