"""When a seller payout may be released (runbook 003), encoded once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_

from console.payouts.models import DisputeStatus, PayoutStatus, Seller, SellerPayout


def ready_condition(now: datetime) -> ColumnElement[bool]:
    """SQL form of `ineligibility_reasons(...) == []` (needs a join to Seller)."""
    return and_(
        SellerPayout.status.in_([PayoutStatus.HELD, PayoutStatus.ELIGIBLE]),
        # `NOT admin_hold` (the column is NOT NULL), as the partial indexes say it:
        # PostgreSQL does not prove `admin_hold IS false` implies `NOT admin_hold`, and
        # without that the count and the page cannot use ix_seller_payouts_ready*.
        ~SellerPayout.admin_hold,
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


_STATUS_WORDS = {
    PayoutStatus.PENDING_APPROVAL: "a release request waits for a second admin",
    PayoutStatus.APPROVED: "approved, the transfer is being sent",
    PayoutStatus.RELEASED: "already released",
    PayoutStatus.FAILED: "the last transfer failed",
}


def ineligibility_reasons(payout: SellerPayout, now: datetime, *, status: bool = True) -> list[str]:
    """Why a payout cannot be released yet, in words; empty when it can.

    `status=False` leaves its status out: an approval re-checks a payout that is
    waiting for it as if it were still releasable.
    """
    reasons: list[str] = []
    if status and payout.status not in (PayoutStatus.HELD, PayoutStatus.ELIGIBLE):
        reasons.append(_STATUS_WORDS.get(payout.status, f"status is {payout.status.value}"))
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


def payout_state(payout: SellerPayout, now: datetime) -> tuple[str, str]:
    """The payout's state in the runbook's words: a short label and what it means.

    The stored status says where the money is (`held` = funds still held for the
    seller, which is also what a releasable payout is); support needs to know
    what is waiting for what, so the label is the first reason it cannot be
    released, or "Ready to release".
    """
    status = payout.status
    if status == PayoutStatus.RELEASED:
        return "Released", "the transfer to the seller's connected account was made"
    if status == PayoutStatus.FAILED:
        return "Transfer failed", "Stripe refused the transfer; see the history, then retry"
    if status == PayoutStatus.PENDING_APPROVAL:
        return "Awaiting approval", "a second admin must approve the release request"
    if status == PayoutStatus.APPROVED:
        return "Approved", "released by the job worker; the transfer follows shortly"
    if payout.admin_hold:
        return "Admin hold", payout.hold_reason or "an admin put it on hold; unhold to release"
    if payout.dispute_status == DisputeStatus.OPEN:
        return "Dispute open", "funds stay held until the dispute is resolved"
    if not payout.seller.transfers_enabled:
        return "Account blocked", "the seller's connected account cannot receive transfers"
    if payout.protected and (payout.protection_ends_at is None or payout.protection_ends_at > now):
        return "In protection window", "funds are held until the buyer protection window ends"
    if payout.protected and payout.delivery_confirmed_at is None:
        return "Awaiting delivery", "funds are held until delivery is confirmed"
    if payout.protected:
        return "Ready to release", "protection ended and delivery confirmed: funds can go"
    return "Ready to release", "not a protected sale: funds can go"


def protection_words(payout: SellerPayout, now: datetime) -> str:
    """'ends 4 Dec 2026 10:00 UTC', 'ended 28 Nov 2026 ...' or 'not protected'."""
    if not payout.protected:
        return "not protected"
    if payout.protection_ends_at is None:
        return "no end date"
    verb = "ends" if payout.protection_ends_at > now else "ended"
    return f"{verb} {payout.protection_ends_at:%d %b %Y %H:%M} UTC"
