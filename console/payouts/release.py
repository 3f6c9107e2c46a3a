"""Releasing seller payouts: four-eyes approvals bound to a payload hash, and
Stripe Connect transfers that happen at most once per payout.

A release request freezes the exact payload (payout ids, amounts, currencies,
destination accounts) and its SHA-256. Approval re-checks everything: a
payout whose amount, account, hold or dispute changed voids the approval.
Each transfer follows the money-movement protocol with the idempotency key
`transfer-<payout>`: one payout, one key, one transfer, however many clicks,
processes or crashes.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from console.audit.chain import canonical_json
from console.db import utcnow
from console.integrations.outbox import emit
from console.payments import money
from console.payments.gateway import GatewayError, StripeGateway
from console.payments.models import MoneyMovement, MovementKind, MovementStatus
from console.payouts.eligibility import ineligibility_reasons
from console.payouts.models import (
    Approval,
    ApprovalItem,
    ApprovalStatus,
    PayoutStatus,
    SellerPayout,
)
from console.templating import money as format_money


def payout_payload(payouts: list[SellerPayout]) -> dict[str, Any]:
    return {
        "payouts": [
            {
                "id": p.id,
                "payout": p.external_id,
                "amount": p.amount,
                "currency": p.currency,
                "destination": p.destination_account,
            }
            for p in sorted(payouts, key=lambda p: p.id)
        ]
    }


def payload_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def request_release(
    s: Session, payouts: list[SellerPayout], *, actor: dict[str, Any], reason: str
) -> Approval:
    """Create an approval for exactly these payouts (the caller holds their locks)."""
    payload = payout_payload(payouts)
    approval = Approval(
        payload=payload,
        payload_hash=payload_hash(payload),
        status=ApprovalStatus.PENDING,
        requested_by_sub=str(actor.get("sub")),
        requested_by_email=str(actor.get("email") or ""),
        request_reason=reason,
    )
    s.add(approval)
    s.flush()
    for p in payouts:
        p.status = PayoutStatus.PENDING_APPROVAL
        s.add(
            ApprovalItem(
                approval_id=approval.id,
                payout_id=p.id,
                amount=p.amount,
                currency=p.currency,
                destination_account=p.destination_account,
            )
        )
    return approval


def changes_since_request(s: Session, approval: Approval) -> tuple[list[SellerPayout], list[str]]:
    """Lock the approval's payouts; list what changed since the request, in words."""
    ids = [item["id"] for item in approval.payload.get("payouts", [])]
    payouts = list(
        s.scalars(
            select(SellerPayout)
            .where(SellerPayout.id.in_(ids))
            .order_by(SellerPayout.id)
            .with_for_update()
        )
    )
    problems: list[str] = []
    if payload_hash(approval.payload) != approval.payload_hash:
        problems.append("the stored request does not match its hash")
    by_id = {p.id: p for p in payouts}
    now = utcnow()
    for item in approval.payload.get("payouts", []):
        p = by_id.get(item["id"])
        if p is None:
            problems.append(f"payout {item['payout']} no longer exists")
            continue
        if p.amount != item["amount"] or p.currency != item["currency"]:
            problems.append(
                f"{p.external_id}: amount changed from {item['amount']} {item['currency']} "
                f"to {p.amount} {p.currency}"
            )
        if p.destination_account != item["destination"]:
            problems.append(
                f"{p.external_id}: destination changed from {item['destination']} "
                f"to {p.destination_account}"
            )
        if p.status != PayoutStatus.PENDING_APPROVAL:
            problems.append(f"{p.external_id}: status is now {p.status.value}")
        # Eligibility again, as if it were still waiting (status aside).
        reasons = ineligibility_reasons(p, now, status=False)
        problems.extend(f"{p.external_id}: {r}" for r in reasons)
    return payouts, problems


def void(approval: Approval, payouts: list[SellerPayout], why: list[str], actor_sub: str) -> None:
    approval.status = ApprovalStatus.VOIDED
    approval.decided_by_sub = actor_sub
    approval.decided_at = utcnow()
    approval.decision_reason = "; ".join(why)[:2000]
    for p in payouts:
        if p.status == PayoutStatus.PENDING_APPROVAL:
            p.status = PayoutStatus.ELIGIBLE


@dataclass
class TransferResult:
    payout: str
    result: str  # released | failed | in_flight | skipped
    message: str
    transfer_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def transfer_key(s: Session, payout: SellerPayout) -> str:
    """One key per payout; a new one only after Stripe definitely refused the last."""
    refused = s.scalar(
        select(func.count(MoneyMovement.id)).where(
            MoneyMovement.target_type == "payout",
            MoneyMovement.target_id == payout.external_id,
            MoneyMovement.status == MovementStatus.FAILED,
        )
    )
    return f"transfer-{payout.external_id}" + (f"-{refused + 1}" if refused else "")


def release_one(
    s: Session,
    gw: StripeGateway,
    payout: SellerPayout,
    *,
    actor_sub: str | None,
    approval: dict[str, Any] | None = None,
) -> TransferResult:
    """Move a payout's money: attempt committed first, Stripe call, outcome (caller commits).

    The caller holds the payout's row lock. A timeout or 5xx keeps the attempt
    in flight (the outcome is unknown); `payouts resume` finishes it. `approval`
    (id, who approved, why) is kept with the attempt: if the process dies after
    Stripe moved the money but before the approval was committed, resume can
    still record the decision that moved it.
    """
    key = transfer_key(s, payout)
    movement = money.begin(
        kind=MovementKind.TRANSFER,
        idempotency_key=key,
        target_type="payout",
        target_id=payout.external_id,
        amount=payout.amount,
        currency=payout.currency,
        payload={
            "destination": payout.destination_account,
            "transfer_group": f"order-{payout.order_id}",
            "payout": payout.external_id,
            **({"approval": approval} if approval else {}),
        },
        actor_sub=actor_sub,
    )
    try:
        transfer = gw.create_transfer(
            amount=payout.amount,
            currency=payout.currency,
            destination=payout.destination_account,
            transfer_group=f"order-{payout.order_id}",
            idempotency_key=key,
            metadata={"payout_id": payout.external_id, "order_id": str(payout.order_id)},
        )
    except GatewayError as exc:
        if exc.outcome_unknown:
            money.note_call(movement.id, str(exc), failed=False)
            payout.last_error = f"in flight: {exc}"[:2000]
            return TransferResult(
                payout.external_id,
                "in_flight",
                f"Stripe did not confirm the transfer ({exc.message}); it stays in flight and "
                "`payouts resume` will finish it with the same key",
                details={"movement_id": movement.id},
            )
        if exc.kind == "rate_limited":
            # Not executed at Stripe: the same key may simply be tried again.
            money.note_call(movement.id, str(exc), failed=False)
            return TransferResult(payout.external_id, "rate_limited", "Stripe rate limit: retry")
        money.note_call(movement.id, str(exc), failed=True)
        payout.last_error = str(exc)[:2000]
        payout.status = PayoutStatus.FAILED
        return TransferResult(payout.external_id, "failed", f"Stripe refused: {exc.message}")
    mark_released(payout, str(transfer["id"]))
    money.succeed(s, movement.id, str(transfer["id"]))
    return TransferResult(
        payout.external_id,
        "released",
        f"transferred {payout.amount} {payout.currency} to {payout.destination_account}",
        transfer_id=str(transfer["id"]),
        details={"movement_id": movement.id},
    )


def mark_released(payout: SellerPayout, transfer_id: str) -> None:
    payout.status = PayoutStatus.RELEASED
    payout.stripe_transfer_id = transfer_id
    payout.released_at = utcnow()
    payout.last_error = None


@money.finisher(MovementKind.TRANSFER)
def finish_transfer(s: Session, gw: StripeGateway, movement: MoneyMovement) -> str:
    """Re-issue an in-flight transfer with its key; after 23 h find it by metadata."""
    payout = s.scalar(
        select(SellerPayout).where(SellerPayout.external_id == movement.target_id).with_for_update()
    )
    if payout is None:
        raise LookupError(f"payout {movement.target_id} not found")
    age = utcnow() - movement.created_at
    transfer_id: str | None = None
    if age.total_seconds() > 23 * 3600:
        # Stripe keeps idempotency keys for 24 h: look for the transfer instead.
        for t in gw.list_transfers(transfer_group=movement.payload["transfer_group"]):
            if (t.get("metadata") or {}).get("payout_id") == payout.external_id:
                transfer_id = str(t["id"])
                break
    if transfer_id is None:
        transfer = gw.create_transfer(
            amount=movement.amount,
            currency=movement.currency,
            destination=movement.payload["destination"],
            transfer_group=movement.payload["transfer_group"],
            idempotency_key=movement.idempotency_key,
            metadata={"payout_id": payout.external_id, "order_id": str(payout.order_id)},
        )
        transfer_id = str(transfer["id"])
    mark_released(payout, transfer_id)
    from console.audit.service import record

    why = "finished an in-flight transfer with its original idempotency key"
    entry = record(
        s,
        action="payouts:payout:release",
        outcome="success",
        actor=RESUME,
        target_type="payout",
        target_id=payout.external_id,
        reason=why,
        details={"transfer_id": transfer_id, "movement_id": movement.id},
    )
    _finish_approval(s, movement, payout, transfer_id)
    emit(s, "payout.released", payout, actor=RESUME, reason=why, audit_seq=entry.seq)
    return transfer_id


RESUME: dict[str, Any] = {"sub": "system:payouts-resume", "email": None, "roles": []}


def _finish_approval(
    s: Session, movement: MoneyMovement, payout: SellerPayout, transfer_id: str
) -> None:
    """Bring the approval that moved this money up to date with it.

    An approval whose transaction died after Stripe's answer is still
    `pending`, although its four-eyes check passed and money moved: record the
    decision as it was taken (who, why, from the attempt), mark the row
    released, and let `payouts resume` release the approval's other rows.
    """
    from console.audit.service import record

    decision = movement.payload.get("approval") or {}
    approval = s.get(Approval, decision.get("id"), with_for_update=True) if decision else None
    if approval is None:
        return
    if approval.status == ApprovalStatus.PENDING:
        approval.status = ApprovalStatus.APPROVED
        approval.decided_by_sub = decision.get("approved_by") or movement.actor_sub
        approval.decided_at = movement.created_at
        approval.decision_reason = decision.get("reason")
        others = [i.payout_id for i in approval.items if i.payout_id != payout.id]
        for other in s.scalars(
            select(SellerPayout).where(SellerPayout.id.in_(others)).with_for_update()
        ):
            if other.status == PayoutStatus.PENDING_APPROVAL:
                other.status = PayoutStatus.APPROVED
        record(
            s,
            action="payouts:release:approve",
            outcome="success",
            actor=RESUME,
            target_type="approval",
            target_id=str(approval.id),
            reason=approval.decision_reason,
            details={
                "approved_by": approval.decided_by_sub,
                "finished_by": "payouts resume: the approving request stopped after Stripe "
                "moved the money",
                "transfer_id": transfer_id,
            },
        )
    for item in approval.items:
        if item.payout_id == payout.id:
            item.result, item.message = "released", f"transferred ({transfer_id})"
    if all(i.result == "released" for i in approval.items):
        approval.status = ApprovalStatus.EXECUTED


@dataclass
class AutoReleaseReport:
    scanned: int = 0
    released: int = 0
    requested: int = 0
    errors: int = 0
    last_error: str | None = None
    lines: list[str] = field(default_factory=list)


SYSTEM_SUB = "system:auto-release"
SYSTEM: dict[str, Any] = {"sub": SYSTEM_SUB, "email": None, "roles": []}


def auto_release(
    s: Session, gw: StripeGateway, *, limit: int, dry_run: bool = False
) -> AutoReleaseReport:
    """Release eligible payouts up to `limit` (minor units); above it, ask a person.

    Safe in two processes at once: each payout is taken with SKIP LOCKED and
    its transfer key is fixed, so a payout is never transferred twice.
    """
    from console.audit.service import record
    from console.payouts.eligibility import ready_condition
    from console.payouts.models import Seller

    report = AutoReleaseReport()
    now = utcnow()
    ids = list(
        s.scalars(
            select(SellerPayout.id)
            .join(Seller, Seller.id == SellerPayout.seller_id)
            .where(ready_condition(now), SellerPayout.status != PayoutStatus.PENDING_APPROVAL)
            .order_by(SellerPayout.id)
        )
    )
    s.rollback()
    for payout_id in ids:
        payout = s.scalar(
            select(SellerPayout)
            .join(Seller, Seller.id == SellerPayout.seller_id)
            .where(
                SellerPayout.id == payout_id,
                ready_condition(utcnow()),
                SellerPayout.status != PayoutStatus.PENDING_APPROVAL,
            )
            .with_for_update(of=SellerPayout, skip_locked=True)
        )
        if payout is None:
            s.rollback()
            continue
        report.scanned += 1
        if dry_run:
            verb = "release" if payout.amount <= limit else "ask for approval of"
            report.lines.append(f"{payout.external_id}: would {verb} {payout.amount}")
            s.rollback()
            continue
        if payout.amount > limit:
            approval = request_release(
                s,
                [payout],
                actor=SYSTEM,
                reason=f"above the auto-release limit of {format_money(limit, payout.currency)}",
            )
            record(
                s,
                action="payouts:release:request",
                outcome="success",
                actor=SYSTEM,
                target_type="payout",
                target_id=payout.external_id,
                reason="above the auto-release limit",
                details={"approval_id": approval.id, "limit": limit},
            )
            s.commit()
            report.requested += 1
            report.lines.append(f"{payout.external_id}: approval #{approval.id} requested")
            continue
        payout.status = PayoutStatus.APPROVED
        result = release_one(s, gw, payout, actor_sub=SYSTEM_SUB)
        why = "auto-release: eligible and within the limit"
        entry = record(
            s,
            action="payouts:payout:release",
            outcome="success" if result.result == "released" else "failed",
            actor=SYSTEM,
            target_type="payout",
            target_id=payout.external_id,
            reason=why,
            details={"result": result.result, "transfer_id": result.transfer_id},
        )
        if result.result == "released":
            emit(s, "payout.released", payout, actor=SYSTEM, reason=why, audit_seq=entry.seq)
        s.commit()
        report.lines.append(f"{payout.external_id}: {result.result} ({result.message})")
        if result.result == "released":
            report.released += 1
        else:
            report.errors += 1
            report.last_error = f"{payout.external_id}: {result.message}"
    return report


INLINE_LIMIT = 5


def execute_approval(
    s: Session,
    gw: StripeGateway,
    approval_id: int,
    *,
    actor: dict[str, Any],
    max_rows: int | None = None,
) -> dict[str, int]:
    """Release an approved request row by row; resumable, one key per payout.

    Rows already done are skipped, so running it again after a crash (or from
    `payouts resume`) finishes the rest without re-sending anything. Each row
    commits on its own: one bad row never stops the others. A rate-limited row
    waits and is tried again with the same key.
    """
    from console.audit.service import record

    counts = {"released": 0, "failed": 0, "in_flight": 0, "skipped": 0}
    approval = s.get(Approval, approval_id)
    if approval is None or approval.status != ApprovalStatus.APPROVED:
        s.rollback()
        return counts
    item_ids = [i.id for i in approval.items if i.result in (None, "rate_limited")]
    s.rollback()
    done = 0
    for item_id in item_ids:
        if max_rows is not None and done >= max_rows:
            break
        item = s.get(ApprovalItem, item_id, with_for_update=True)
        if item is None or item.result not in (None, "rate_limited"):
            s.rollback()
            continue
        payout = s.scalar(
            select(SellerPayout).where(SellerPayout.id == item.payout_id).with_for_update()
        )
        if payout is None or payout.status != PayoutStatus.APPROVED:
            item.result = "skipped"
            item.message = f"status is {payout.status.value}" if payout else "payout vanished"
            s.commit()
            counts["skipped"] += 1
            continue
        for pause in (1, 2, 4, 8, 0):
            result = release_one(
                s,
                gw,
                payout,
                actor_sub=str(actor.get("sub")),
                approval={"id": approval_id, "approved_by": str(actor.get("sub"))},
            )
            if result.result != "rate_limited" or not pause:
                break
            time.sleep(pause)
        item.result, item.message = result.result, result.message
        entry = record(
            s,
            action="payouts:payout:release",
            outcome="success" if result.result == "released" else "failed",
            actor=actor,
            target_type="payout",
            target_id=payout.external_id,
            reason=approval.decision_reason,
            params={"approval_id": approval_id},
            details={"result": result.result, "transfer_id": result.transfer_id},
        )
        if result.result == "released":
            emit(
                s,
                "payout.released",
                payout,
                actor=actor,
                reason=approval.decision_reason,
                audit_seq=entry.seq,
            )
        s.commit()
        counts[result.result if result.result in counts else "failed"] += 1
        done += 1
    approval = s.get(Approval, approval_id, with_for_update=True)
    if approval is not None and all(i.result == "released" for i in approval.items):
        approval.status = ApprovalStatus.EXECUTED
    s.commit()
    return counts


def progress(approval: Approval) -> dict[str, int]:
    counts = {"total": len(approval.items), "released": 0, "failed": 0, "pending": 0}
    for item in approval.items:
        if item.result == "released":
            counts["released"] += 1
        elif item.result in (None, "rate_limited", "in_flight"):
            counts["pending"] += 1
        else:
            counts["failed"] += 1
    return counts
