"""integrations: ingest versions, API keys, outbox, deliveries

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 21:27:29.213216
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('shop', sa.String(length=100), nullable=False),
    sa.Column('prefix', sa.String(length=32), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('scopes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by_sub', sa.String(length=255), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_by_sub', sa.String(length=255), nullable=True),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('rotated_from_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['rotated_from_id'], ['api_keys.id'], name=op.f('fk_api_keys_rotated_from_id_api_keys')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('prefix', name=op.f('uq_api_keys_prefix'))
    )
    op.create_index('ix_api_keys_created_id', 'api_keys', ['created_at', 'id'], unique=False)
    op.create_table('outbox_events',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('record_kind', sa.String(length=32), nullable=False),
    sa.Column('record_id', sa.String(length=64), nullable=False),
    sa.Column('record_seq', sa.BigInteger(), nullable=False),
    sa.Column('data', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('actor', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('audit_seq', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_events')),
    sa.UniqueConstraint('event_id', name=op.f('uq_outbox_events_event_id'))
    )
    op.create_index('ix_outbox_events_record', 'outbox_events', ['record_kind', 'record_id', 'record_seq'], unique=True)
    op.create_table('record_sequences',
    sa.Column('record_kind', sa.String(length=32), nullable=False),
    sa.Column('record_id', sa.String(length=64), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('record_kind', 'record_id', name=op.f('pk_record_sequences'))
    )
    op.create_table('webhook_endpoints',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('description', sa.String(length=255), nullable=False),
    sa.Column('event_types', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('disabled_reason', sa.Text(), nullable=True),
    sa.Column('secret_enc', sa.Text(), nullable=False),
    sa.Column('previous_secret_enc', sa.Text(), nullable=True),
    sa.Column('previous_secret_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by_sub', sa.String(length=255), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoints'))
    )
    op.create_table('event_deliveries',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('event_pk', sa.BigInteger(), nullable=False),
    sa.Column('endpoint_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('pending', 'succeeded', 'failed', name='deliverystatus', native_enum=False, length=32), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_status_code', sa.Integer(), nullable=True),
    sa.Column('last_response_excerpt', sa.String(length=300), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('succeeded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoints.id'], name=op.f('fk_event_deliveries_endpoint_id_webhook_endpoints')),
    sa.ForeignKeyConstraint(['event_pk'], ['outbox_events.id'], name=op.f('fk_event_deliveries_event_pk_outbox_events')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event_deliveries'))
    )
    op.create_index('ix_event_deliveries_created_id', 'event_deliveries', ['created_at', 'id'], unique=False)
    op.create_index('ix_event_deliveries_due', 'event_deliveries', ['next_attempt_at', 'id'], unique=False, postgresql_where=sa.text("status = 'pending'"))
    op.create_index('ix_event_deliveries_endpoint_id', 'event_deliveries', ['endpoint_id', 'id'], unique=False)
    op.create_index(op.f('ix_event_deliveries_event_pk'), 'event_deliveries', ['event_pk'], unique=False)
    op.create_index('ix_event_deliveries_failed', 'event_deliveries', ['created_at', 'id'], unique=False, postgresql_where=sa.text("status = 'failed'"))
    op.add_column('coupon_reservations', sa.Column('external_id', sa.String(length=64), nullable=True))
    op.add_column('coupon_reservations', sa.Column('shop_updated_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('coupon_reservations', sa.Column('shop_version', sa.BigInteger(), nullable=True))
    op.create_unique_constraint(op.f('uq_coupon_reservations_external_id'), 'coupon_reservations', ['external_id'])
    op.add_column('coupons', sa.Column('shop_updated_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('coupons', sa.Column('shop_version', sa.BigInteger(), nullable=True))
    op.add_column('inventory_items', sa.Column('shop_updated_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('inventory_items', sa.Column('shop_version', sa.BigInteger(), nullable=True))
    op.add_column('inventory_ledger', sa.Column('external_id', sa.String(length=64), nullable=True))
    op.create_unique_constraint(op.f('uq_inventory_ledger_external_id'), 'inventory_ledger', ['external_id'])
    op.add_column('inventory_reservations', sa.Column('shop_updated_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('inventory_reservations', sa.Column('shop_version', sa.BigInteger(), nullable=True))
    op.add_column('invoice_transmissions', sa.Column('external_id', sa.String(length=64), nullable=True))
    op.create_unique_constraint(op.f('uq_invoice_transmissions_external_id'), 'invoice_transmissions', ['external_id'])
    op.add_column('invoices', sa.Column('shop_updated_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('invoices', sa.Column('shop_version', sa.BigInteger(), nullable=True))
    op.add_column('orders', sa.Column('shop_updated_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('orders', sa.Column('shop_version', sa.BigInteger(), nullable=True))
    op.add_column('seller_payouts', sa.Column('shop_updated_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('seller_payouts', sa.Column('shop_version', sa.BigInteger(), nullable=True))
    op.add_column('supplier_sync_runs', sa.Column('external_id', sa.String(length=64), nullable=True))
    op.add_column('supplier_sync_runs', sa.Column('shop_updated_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('supplier_sync_runs', sa.Column('shop_version', sa.BigInteger(), nullable=True))
    op.create_unique_constraint(op.f('uq_supplier_sync_runs_external_id'), 'supplier_sync_runs', ['external_id'])


def downgrade() -> None:
    op.drop_constraint(op.f('uq_supplier_sync_runs_external_id'), 'supplier_sync_runs', type_='unique')
    op.drop_column('supplier_sync_runs', 'shop_version')
    op.drop_column('supplier_sync_runs', 'shop_updated_at')
    op.drop_column('supplier_sync_runs', 'external_id')
    op.drop_column('seller_payouts', 'shop_version')
    op.drop_column('seller_payouts', 'shop_updated_at')
    op.drop_column('orders', 'shop_version')
    op.drop_column('orders', 'shop_updated_at')
    op.drop_column('invoices', 'shop_version')
    op.drop_column('invoices', 'shop_updated_at')
    op.drop_constraint(op.f('uq_invoice_transmissions_external_id'), 'invoice_transmissions', type_='unique')
    op.drop_column('invoice_transmissions', 'external_id')
    op.drop_column('inventory_reservations', 'shop_version')
    op.drop_column('inventory_reservations', 'shop_updated_at')
    op.drop_constraint(op.f('uq_inventory_ledger_external_id'), 'inventory_ledger', type_='unique')
    op.drop_column('inventory_ledger', 'external_id')
    op.drop_column('inventory_items', 'shop_version')
    op.drop_column('inventory_items', 'shop_updated_at')
    op.drop_column('coupons', 'shop_version')
    op.drop_column('coupons', 'shop_updated_at')
    op.drop_constraint(op.f('uq_coupon_reservations_external_id'), 'coupon_reservations', type_='unique')
    op.drop_column('coupon_reservations', 'shop_version')
    op.drop_column('coupon_reservations', 'shop_updated_at')
    op.drop_column('coupon_reservations', 'external_id')
    op.drop_index('ix_event_deliveries_failed', table_name='event_deliveries', postgresql_where=sa.text("status = 'failed'"))
    op.drop_index(op.f('ix_event_deliveries_event_pk'), table_name='event_deliveries')
    op.drop_index('ix_event_deliveries_endpoint_id', table_name='event_deliveries')
    op.drop_index('ix_event_deliveries_due', table_name='event_deliveries', postgresql_where=sa.text("status = 'pending'"))
    op.drop_index('ix_event_deliveries_created_id', table_name='event_deliveries')
    op.drop_table('event_deliveries')
    op.drop_table('webhook_endpoints')
    op.drop_table('record_sequences')
    op.drop_index('ix_outbox_events_record', table_name='outbox_events')
    op.drop_table('outbox_events')
    op.drop_index('ix_api_keys_created_id', table_name='api_keys')
    op.drop_table('api_keys')
