"""When a seller payout may be released (runbook 003), encoded once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_

from console.payouts.models import DisputeStatus, PayoutStatus, Seller, SellerPayout


def ready_condition(now: datetime) -> ColumnElement[bool]:
    """SQL form of `ineligibility_reasons(...) == []` (needs a join to Seller)."""
    return and_(
        SellerPayout.status.in_([PayoutStatus.HELD, PayoutStatus.ELIGIBLE]),
        SellerPayout.admin_hold.is_(False),
        SellerPayout.dispute_status != DisputeStatus.OPEN,
        Seller.transfers_enabled.is_(True),
        or_(
            SellerPayout.protected.is_(False),
            and_(
                SellerPayout.protection_ends_at.is_not(None),
                SellerPayout.protection_ends_at <= now,
                SellerPayout.delivery_confirmed_at.is_not(None),
            ),
        ),
    )


def ineligibility_reasons(payout: SellerPayout, now: datetime) -> list[str]:
    """Why a payout cannot be released yet, in words; empty when it can."""
    reasons: list[str] = []
    if payout.status not in (PayoutStatus.HELD, PayoutStatus.ELIGIBLE):
        reasons.append(f"status is {payout.status.value}")
    if payout.admin_hold:
        reasons.append("on admin hold" + (f": {payout.hold_reason}" if payout.hold_reason else ""))
    if payout.dispute_status == DisputeStatus.OPEN:
        since = f" since {payout.dispute_opened_at:%d %b %Y}" if payout.dispute_opened_at else ""
        reasons.append(f"dispute open{since}")
    if payout.protected:
        if payout.protection_ends_at is None or payout.protection_ends_at > now:
            until = (
                f" until {payout.protection_ends_at:%d %b %Y %H:%M} UTC"
                if payout.protection_ends_at
                else ""
            )
            reasons.append(f"buyer protection window still running{until}")
        if payout.delivery_confirmed_at is None:
            reasons.append("delivery not confirmed")
    if not payout.seller.transfers_enabled:
        reasons.append("seller's connected account cannot receive transfers")
    return reasons
