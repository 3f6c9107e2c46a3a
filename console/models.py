"""Import every model so the metadata is complete (Alembic, create_all)."""

from console.actions.models import IdempotencyRecord
from console.audit.models import AuditChainHead, AuditCheckpoint, AuditEntry
from console.coupons.models import Coupon, CouponReservation, CouponReservationStatus
from console.db import Base
from console.integrations.models import (
    ApiKey,
    DeliveryStatus,
    EventDelivery,
    OutboxEvent,
    RecordSequence,
    WebhookEndpoint,
)
from console.inventory.models import (
    InventoryItem,
    InventoryLedgerEntry,
    InventoryReservation,
    LedgerReason,
    ReservationStatus,
)
from console.invoices.models import Invoice, InvoiceStatus, InvoiceTransmission
from console.ops.models import JobRun, JobStatus
from console.orders.models import Order, OrderLine, OrderNote, OrderStatus
from console.payments.models import (
    MoneyMovement,
    MovementKind,
    MovementStatus,
    Payment,
    PaymentStatus,
    WebhookEvent,
    WebhookRejection,
    WebhookStatus,
)
from console.payouts.models import (
    Approval,
    ApprovalItem,
    ApprovalStatus,
    DisputeStatus,
    PayoutStatus,
    Seller,
    SellerPayout,
)
from console.reconciliation.models import (
    FindingStatus,
    FindingType,
    ReconciliationFinding,
    ReconciliationRun,
    RunStatus,
    Severity,
)
from console.security.models import LoginSession, User
from console.suppliers.models import Supplier, SupplierProduct, SupplierSyncRun, SyncStatus

__all__ = [
    "ApiKey",
    "Approval",
    "ApprovalItem",
    "ApprovalStatus",
    "AuditChainHead",
    "AuditCheckpoint",
    "AuditEntry",
    "Base",
    "Coupon",
    "CouponReservation",
    "CouponReservationStatus",
    "DeliveryStatus",
    "DisputeStatus",
    "EventDelivery",
    "FindingStatus",
    "FindingType",
    "IdempotencyRecord",
    "InventoryItem",
    "InventoryLedgerEntry",
    "InventoryReservation",
    "Invoice",
    "InvoiceStatus",
    "InvoiceTransmission",
    "JobRun",
    "JobStatus",
    "LedgerReason",
    "LoginSession",
    "MoneyMovement",
    "MovementKind",
    "MovementStatus",
    "Order",
    "OrderLine",
    "OrderNote",
    "OrderStatus",
    "OutboxEvent",
    "Payment",
    "PaymentStatus",
    "PayoutStatus",
    "ReconciliationFinding",
    "ReconciliationRun",
    "RecordSequence",
    "ReservationStatus",
    "RunStatus",
    "Seller",
    "SellerPayout",
    "Severity",
    "Supplier",
    "SupplierProduct",
    "SupplierSyncRun",
    "SyncStatus",
    "User",
    "WebhookEndpoint",
    "WebhookEvent",
    "WebhookRejection",
    "WebhookStatus",
]
