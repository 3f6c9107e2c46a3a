"""The ingest API's schema, written once: pydantic models for every record kind.

The same models validate each record (one at a time, so one bad record in a
batch never rejects the others), document `/api/v1/openapi.json` and serialize
the record state that outbound events carry.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

MAX_BATCH = 500
INT4 = 2_147_483_647
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"


def _no_control(value: str) -> str:
    # PostgreSQL refuses NUL in text; other control characters have no business in ids.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _storable_time(value: datetime) -> datetime:
    # Stored in UTC: a time at the very edge of the calendar must still convert.
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None


Text = Annotated[str, AfterValidator(_no_control)]
ExternalId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Sku = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")]
Currency = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z]{3}$", to_upper=True),
]
Email = Annotated[
    str,
    StringConstraints(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
    AfterValidator(_no_control),
]
Amount = Annotated[int, Field(ge=0, le=INT4)]
Count = Annotated[int, Field(ge=0, le=INT4)]
ShortText = Annotated[str, StringConstraints(max_length=255), AfterValidator(_no_control)]
StripeId = Annotated[str, StringConstraints(max_length=255), AfterValidator(_no_control)]
Ref = Annotated[str, StringConstraints(max_length=128), AfterValidator(_no_control)]
LongText = Annotated[str, StringConstraints(max_length=4000), AfterValidator(_no_control)]
Timestamp = Annotated[AwareDatetime, AfterValidator(_storable_time)]


class Record(BaseModel):
    """Fields every record carries: the shop's id and its version of the record."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    id: ExternalId = Field(description="The shop's id of the record (idempotency key).")
    updated_at: Timestamp = Field(
        description="When the shop last changed the record (RFC 3339 with offset). An update "
        "older than what the console holds is refused as stale."
    )
    version: Annotated[int, Field(ge=0, le=2**62)] | None = Field(
        default=None,
        description="Optional monotonic version; when both sides have one it decides staleness.",
    )


# ------------------------------------------------------------------ orders

OrderStatusIn = Literal[
    "pending",
    "paid",
    "confirmed",
    "processing",
    "fulfilled",
    "delivered",
    "completed",
    "cancelled",
    "refunded",
]


class OrderLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Sku
    quantity: Annotated[int, Field(ge=1, le=100_000)]
    unit_amount: Amount


class OrderIn(Record):
    """An order with its line items."""

    status: OrderStatusIn
    customer_email: Email
    amount: Amount = Field(description="Total in minor units of `currency`.")
    currency: Currency
    payment_intent_id: (
        Annotated[str, StringConstraints(max_length=255), AfterValidator(_no_control)] | None
    ) = None
    checkout_session_id: (
        Annotated[str, StringConstraints(max_length=255), AfterValidator(_no_control)] | None
    ) = None
    listing_id: ExternalId | None = None
    seller_email: Email | None = None
    supplier: ShortText | None = Field(default=None, description="Supplier name (dropship).")
    supplier_forwarded_at: Timestamp | None = None
    supplier_order_ref: (
        Annotated[str, StringConstraints(max_length=128), AfterValidator(_no_control)] | None
    ) = None
    paid_at: Timestamp | None = None
    created_at: Timestamp | None = None
    lines: Annotated[list[OrderLineIn], Field(max_length=200)] = Field(default_factory=list)


class OrderOut(OrderIn):
    amount_refunded: Amount = 0
    confirmed_at: Timestamp | None = None
    completed_at: Timestamp | None = None


# ------------------------------------------------------------------ inventory


class ReservationIn(Record):
    """Stock held at checkout for an order."""

    order_id: ExternalId | None = Field(default=None, description="The order's `id`.")
    sku: Sku
    quantity: Annotated[int, Field(ge=1, le=100_000)]
    status: Literal["reserved", "confirmed", "released", "expired"]
    expires_at: Timestamp | None = None
    confirmed_at: Timestamp | None = None
    created_at: Timestamp | None = None


ReservationOut = ReservationIn


class InventoryItemIn(Record):
    """A SKU and its stock count; `id` is the SKU."""

    id: Sku = Field(description="The SKU.")
    name: ShortText = ""
    stock_count: Annotated[int, Field(ge=-INT4, le=INT4)]


InventoryItemOut = InventoryItemIn


class MovementIn(Record):
    """A stock ledger movement; immutable once received."""

    sku: Sku
    quantity_change: Annotated[int, Field(ge=-INT4, le=INT4)]
    reason: Literal["restock", "sale", "return", "manual_correction"]
    reference_id: ShortText | None = None
    created_at: Timestamp | None = None


MovementOut = MovementIn


# ------------------------------------------------------------------ invoices


class TransmissionIn(BaseModel):
    """One attempt of the shop's invoice provider to transmit the invoice."""

    model_config = ConfigDict(extra="forbid")

    id: ExternalId
    attempt: Annotated[int, Field(ge=1, le=10_000)]
    started_at: Timestamp
    finished_at: Timestamp | None = None
    response_status: Annotated[int, Field(ge=100, le=599)] | None = None
    succeeded: bool = False
    request_summary: LongText = ""
    error_payload: dict[str, Any] | None = None


class InvoiceIn(Record):
    order_id: ExternalId | None = None
    amount: Amount
    currency: Currency
    status: Literal["draft", "generated", "transmitted", "failed", "void"]
    attempts: Count = 0
    next_attempt_at: Timestamp | None = None
    last_error: LongText | None = None
    external_ref: ShortText | None = None
    transmissions: Annotated[list[TransmissionIn], Field(max_length=100)] = Field(
        default_factory=list
    )

    @model_validator(mode="after")
    def _small_error_payloads(self) -> InvoiceIn:
        import json

        for t in self.transmissions:
            if t.error_payload is not None and len(json.dumps(t.error_payload)) > 16_000:
                raise ValueError("a transmission's error_payload is larger than 16 kB")
        return self


InvoiceOut = InvoiceIn


# ------------------------------------------------------------------ payouts


class SellerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    name: ShortText = ""
    connected_account: Annotated[str, StringConstraints(pattern=r"^acct_[A-Za-z0-9]{1,64}$")]


class PayoutIn(Record):
    """A seller payout held until protection ends and delivery is confirmed (runbook 003)."""

    order_id: ExternalId
    seller: SellerIn
    amount: Amount
    currency: Currency
    protected: bool = True
    protection_ends_at: Timestamp | None = None
    delivery_confirmed_at: Timestamp | None = None
    dispute_status: Literal["none", "open", "won", "lost"] = "none"
    dispute_opened_at: Timestamp | None = None


class PayoutOut(PayoutIn):
    status: str = "held"
    admin_hold: bool = False
    stripe_transfer_id: str | None = None
    released_at: Timestamp | None = None


# ------------------------------------------------------------------ coupons


class CouponIn(Record):
    """A coupon; `id` is its code."""

    max_redemptions: Count | None = None
    redeemed_count: Count = 0
    reserved_count: Count = 0


CouponOut = CouponIn


class CouponReservationIn(Record):
    coupon: ExternalId = Field(description="The coupon's code.")
    order_id: ExternalId | None = None
    status: Literal["reserved", "redeemed", "expired", "released"]
    expires_at: Timestamp
    created_at: Timestamp | None = None


CouponReservationOut = CouponReservationIn


# ------------------------------------------------------------------ supplier syncs


class SupplierSyncIn(Record):
    supplier: ShortText
    status: Literal["running", "succeeded", "failed"]
    started_at: Timestamp
    finished_at: Timestamp | None = None
    items_synced: Count = 0
    error: LongText | None = None


SupplierSyncOut = SupplierSyncIn


# ------------------------------------------------------------------ envelopes and results


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the field, e.g. `lines.0.sku`.")
    message: str


ResultKind = Literal["created", "updated", "unchanged", "stale", "invalid"]


class RecordResult(BaseModel):
    index: int = Field(description="Position of the record in the request (0 for one record).")
    id: str | None
    result: ResultKind
    errors: list[FieldError] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    held_updated_at: datetime | None = Field(
        default=None, description="For `stale`: the version the console holds."
    )
    held_version: int | None = None


class BatchResult(BaseModel):
    results: list[RecordResult]
    counts: dict[str, int]


class Problem(BaseModel):
    """RFC 9457 problem details, with field-level errors where there are any."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


def batch_model(record: type[Record]) -> type[BaseModel]:
    """The request body of a batch of `record`s (documentation; records are checked one by one)."""
    from pydantic import create_model

    name = record.__name__.removesuffix("In") + "Batch"
    model: type[BaseModel] = create_model(
        name,
        __config__=ConfigDict(extra="forbid"),
        records=(
            Annotated[list[record], Field(min_length=1, max_length=MAX_BATCH)],  # type: ignore[valid-type]
            ...,
        ),  # type: ignore[arg-type]
    )
    return model


def put_model(record: type[Record]) -> type[BaseModel]:
    """The body of a single upsert: the record, its `id` optional (the path names it)."""
    from pydantic import create_model

    model: type[BaseModel] = create_model(
        record.__name__.removesuffix("In") + "Put",
        __base__=record,
        id=(
            ExternalId | None,
            Field(default=None, description="Optional here; if given, equal to the path's id."),
        ),
    )
    return model
