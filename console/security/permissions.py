"""Permissions (`domain:object:verb`) and the one role table that grants them.

Views, actions and templates all ask `has_permission`; nothing checks a role
name directly.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class Permission(enum.StrEnum):
    # Reading
    QUEUES_VIEW = "queues:all:view"
    AUDIT_VIEW = "audit:log:view"
    AUDIT_EXPORT = "audit:log:export"
    # Support: low-risk fixes
    ORDERS_NOTE_ADD = "orders:note:add"
    WEBHOOKS_EVENT_REPLAY = "webhooks:event:replay"
    ORDERS_PAYMENT_VERIFY = "orders:payment:verify"
    INVENTORY_RESERVATION_CONFIRM = "inventory:reservation:confirm"
    INVOICES_INVOICE_RETRY = "invoices:invoice:retry"
    PAYOUTS_RELEASE_REQUEST = "payouts:release:request"
    ORDERS_SUPPLIER_FORWARD = "orders:supplier:forward"
    COUPONS_RESERVATION_RELEASE = "coupons:reservation:release"
    # Admin: money and state fixes
    ORDERS_ORDER_REFUND = "orders:order:refund"
    ORDERS_ORDER_CANCEL = "orders:order:cancel"
    ORDERS_ORDER_FIX = "orders:order:fix"
    INVOICES_INVOICE_MARK_SENT = "invoices:invoice:mark_sent"
    INVOICES_INVOICE_VOID = "invoices:invoice:void"
    INVENTORY_STOCK_CORRECT = "inventory:stock:correct"
    COUPONS_RESERVATION_REPAIR = "coupons:reservation:repair"
    SUPPLIERS_SYNC_RETRY = "suppliers:sync:retry"
    RECONCILIATION_RUN_START = "reconciliation:run:start"
    RECONCILIATION_FINDING_FIX = "reconciliation:finding:fix"
    RECONCILIATION_FINDING_DISMISS = "reconciliation:finding:dismiss"
    PAYOUTS_PAYOUT_HOLD = "payouts:payout:hold"
    PAYOUTS_RELEASE_APPROVE = "payouts:release:approve"
    JOBS_JOB_RUN = "jobs:job:run"
    # The shop connection (/integrations)
    INTEGRATIONS_DELIVERY_REDELIVER = "integrations:delivery:redeliver"
    INTEGRATIONS_KEY_MANAGE = "integrations:key:manage"
    INTEGRATIONS_ENDPOINT_MANAGE = "integrations:endpoint:manage"


_SUPPORT = frozenset(
    {
        Permission.QUEUES_VIEW,
        Permission.ORDERS_NOTE_ADD,
        Permission.WEBHOOKS_EVENT_REPLAY,
        Permission.ORDERS_PAYMENT_VERIFY,
        Permission.INVENTORY_RESERVATION_CONFIRM,
        Permission.INVOICES_INVOICE_RETRY,
        Permission.PAYOUTS_RELEASE_REQUEST,
        # Forwarding sends an order through the gateway with its idempotency key:
        # it cannot create a second order, so it is a low-risk fix (runbook 001).
        Permission.ORDERS_SUPPLIER_FORWARD,
        Permission.COUPONS_RESERVATION_RELEASE,
        Permission.INTEGRATIONS_DELIVERY_REDELIVER,
    }
)

ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "support": _SUPPORT,
    "admin": _SUPPORT
    | {
        Permission.AUDIT_VIEW,
        Permission.AUDIT_EXPORT,
        Permission.ORDERS_ORDER_REFUND,
        Permission.ORDERS_ORDER_CANCEL,
        Permission.ORDERS_ORDER_FIX,
        Permission.INVOICES_INVOICE_MARK_SENT,
        Permission.INVOICES_INVOICE_VOID,
        Permission.INVENTORY_STOCK_CORRECT,
        Permission.COUPONS_RESERVATION_REPAIR,
        Permission.SUPPLIERS_SYNC_RETRY,
        Permission.RECONCILIATION_RUN_START,
        Permission.RECONCILIATION_FINDING_FIX,
        Permission.RECONCILIATION_FINDING_DISMISS,
        Permission.PAYOUTS_PAYOUT_HOLD,
        Permission.PAYOUTS_RELEASE_APPROVE,
        Permission.JOBS_JOB_RUN,
        Permission.INTEGRATIONS_KEY_MANAGE,
        Permission.INTEGRATIONS_ENDPOINT_MANAGE,
    },
    # Auditors see the queues read-only too: reviewing an entry usually means
    # opening the order or payout it names.
    "auditor": frozenset({Permission.AUDIT_VIEW, Permission.AUDIT_EXPORT, Permission.QUEUES_VIEW}),
}


def permissions_for(roles: Iterable[str]) -> frozenset[Permission]:
    """Return the union of the permissions of the given roles."""
    granted: set[Permission] = set()
    for role in roles:
        granted |= ROLE_PERMISSIONS.get(role, frozenset())
    return frozenset(granted)


def roles_from_groups(groups: Iterable[str], role_map: dict[str, str]) -> list[str]:
    """Map IdP groups to console roles through ROLE_MAP; unknown groups give nothing."""
    return sorted({role_map[g] for g in groups if g in role_map})
