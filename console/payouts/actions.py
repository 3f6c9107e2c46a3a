"""Guarded actions on payouts: hold, unhold, request release, approve, reject."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from flask import url_for
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from console.actions.framework import (
    Action,
    ActionContext,
    ActionError,
    Outcome,
    audited_record,
    declare,
    loader,
)
from console.audit.service import record
from console.db import parse_id, utcnow
from console.integrations.outbox import emit
from console.jobs.engine import enqueue
from console.jobs.tasks import RELEASE_APPROVAL
from console.payments.gateway import gateway
from console.payouts.eligibility import ineligibility_reasons
from console.payouts.models import (
    Approval,
    ApprovalStatus,
    PayoutStatus,
    SellerPayout,
)
from console.payouts.release import (
    INLINE_LIMIT,
    changes_since_request,
    release_one,
    request_release,
    void,
)
from console.security.permissions import Permission
from console.templating import money

load_payout = loader(SellerPayout, SellerPayout.external_id, selectinload(SellerPayout.seller))


def payout_snapshot(p: SellerPayout) -> dict[str, Any]:
    return {
        "status": p.status.value,
        "amount": p.amount,
        "currency": p.currency,
        "destination": p.destination_account,
        "admin_hold": p.admin_hold,
        "dispute_status": p.dispute_status.value,
        "stripe_transfer_id": p.stripe_transfer_id,
    }


audited_record(SellerPayout, "payout", lambda p: p.external_id, payout_snapshot)


def _approval_payouts(a: Approval) -> list[SellerPayout]:
    """The payouts a release request is about: approving or rejecting changes each."""
    from sqlalchemy.orm import object_session

    s = object_session(a)
    if s is None:
        return []
    return [p for item in a.items if (p := s.get(SellerPayout, item.payout_id)) is not None]


def payout_url(p: SellerPayout) -> str:
    return url_for("payouts.detail", external_id=p.external_id)


def _describe(p: SellerPayout) -> list[tuple[str, str]]:
    return [
        ("Payout", f"{p.external_id} ({p.status.value})"),
        ("Amount", money(p.amount, p.currency)),
        ("Seller", f"{p.seller.email} — {p.destination_account}"),
    ]


# ------------------------------------------------------------------ hold / unhold


def _hold_effect(ctx: ActionContext, p: SellerPayout) -> Outcome:
    p.admin_hold = True
    p.hold_reason = ctx.reason
    return Outcome(f"Payout {p.external_id} is on hold.")


def _unhold_effect(ctx: ActionContext, p: SellerPayout) -> Outcome:
    p.admin_hold = False
    p.hold_reason = None
    return Outcome(f"Hold lifted on payout {p.external_id}.")


RELEASABLE = (PayoutStatus.HELD, PayoutStatus.ELIGIBLE, PayoutStatus.PENDING_APPROVAL)

hold = declare(
    Action[SellerPayout](
        name="payouts:payout:hold",
        label="Hold",
        permission=Permission.PAYOUTS_PAYOUT_HOLD,
        target_type="payout",
        load=load_payout,
        precondition=lambda p: (
            None
            if not p.admin_hold and p.status in RELEASABLE
            else "the payout is already on hold or no longer releasable."
        ),
        describe=lambda p: [
            *_describe(p),
            ("Effect", "Blocks release (manual and automatic) until the hold is lifted."),
        ],
        effect=_hold_effect,
        snapshot=payout_snapshot,
        return_url=payout_url,
        event="payout.held",
    )
)

unhold = declare(
    Action[SellerPayout](
        name="payouts:payout:unhold",
        label="Lift hold",
        permission=Permission.PAYOUTS_PAYOUT_HOLD,
        target_type="payout",
        load=load_payout,
        precondition=lambda p: None if p.admin_hold else "the payout is not on hold.",
        describe=lambda p: [
            *_describe(p),
            ("Hold reason", p.hold_reason or "—"),
            ("Effect", "Lifts the admin hold; the other release rules still apply."),
        ],
        effect=_unhold_effect,
        snapshot=payout_snapshot,
        return_url=payout_url,
        event="payout.hold_lifted",
    )
)


# ------------------------------------------------------------------ request release


def _request_precondition(p: SellerPayout) -> str | None:
    if p.status == PayoutStatus.PENDING_APPROVAL:
        return "a release of this payout is already waiting for approval."
    reasons = ineligibility_reasons(p, utcnow())
    if reasons:
        return "not eligible: " + "; ".join(reasons) + "."
    return None


def _request_effect(ctx: ActionContext, p: SellerPayout) -> Outcome:
    approval = request_release(ctx.session, [p], actor=ctx.user.actor(), reason=ctx.reason)
    return Outcome(
        f"Release of {p.external_id} requested (approval #{approval.id}); a different admin "
        "must approve it.",
        {"approval_id": approval.id, "payload_hash": approval.payload_hash},
    )


request = declare(
    Action[SellerPayout](
        name="payouts:release:request",
        label="Request release",
        permission=Permission.PAYOUTS_RELEASE_REQUEST,
        target_type="payout",
        load=load_payout,
        precondition=_request_precondition,
        describe=lambda p: [
            *_describe(p),
            (
                "Effect",
                f"Asks a second admin to approve a transfer of {money(p.amount, p.currency)} "
                f"to {p.destination_account}. The approval is bound to exactly this amount "
                "and account.",
            ),
        ],
        effect=_request_effect,
        snapshot=payout_snapshot,
        return_url=payout_url,
    )
)


# ------------------------------------------------------------------ approve / reject


def load_approval(s: Session, approval_id: str, lock: bool) -> Approval | None:
    key = parse_id(approval_id)
    if key is None:
        return None
    stmt = select(Approval).where(Approval.id == key).options(selectinload(Approval.items))
    if lock:
        stmt = stmt.with_for_update(of=Approval, nowait=True)
    return s.scalar(stmt)


def approval_snapshot(a: Approval) -> dict[str, Any]:
    return {"status": a.status.value, "payload_hash": a.payload_hash, "payload": a.payload}


def approvals_url(_a: Approval) -> str:
    return url_for("payouts.approvals")


def _approval_describe(a: Approval) -> list[tuple[str, str]]:
    lines = [
        ("Requested by", f"{a.requested_by_email or a.requested_by_sub}"),
        ("Reason given", a.request_reason or "—"),
    ]
    for item in a.payload.get("payouts", []):
        lines.append(
            (
                f"Transfer {item['payout']}",
                f"{money(item['amount'], item['currency'])} to {item['destination']}",
            )
        )
    lines.append(("Payload hash", a.payload_hash))
    return lines


def _pending(a: Approval) -> str | None:
    return None if a.status == ApprovalStatus.PENDING else f"the request is {a.status.value}."


def _approve_effect(ctx: ActionContext, a: Approval) -> Outcome:
    if a.requested_by_sub == ctx.user.sub:
        raise ActionError(
            "You requested this release: four eyes means a different admin must approve it.",
            status=403,
            details={"why": "self-approval"},
        )
    payouts, problems = changes_since_request(ctx.session, a)
    if problems:
        void(a, payouts, problems, ctx.user.sub)
        return Outcome(
            "Approval voided, nothing was transferred: " + "; ".join(problems) + ".",
            {"voided": problems},
            level="warning",
        )
    a.status = ApprovalStatus.APPROVED
    a.decided_by_sub = ctx.user.sub
    a.decided_at = utcnow()
    a.decision_reason = ctx.reason
    if len(payouts) > INLINE_LIMIT:
        for p in payouts:
            p.status = PayoutStatus.APPROVED
        # Enqueued in this transaction: the release job exists iff the approval committed.
        job_id = enqueue(
            ctx.session,
            RELEASE_APPROVAL,
            queue="money",
            lock=f"approval-{a.id}",
            approval_id=a.id,
            actor=ctx.user.actor(),
        )
        return Outcome(
            f"Approved: {len(payouts)} transfers are being made row by row by the job "
            "workers; progress shows on this page. A stopped worker's rows are finished by "
            "another, with the same keys.",
            {"payouts": len(payouts), "background": True, "job_id": job_id},
        )
    gw = gateway()
    results = []
    for p in payouts:
        p.status = PayoutStatus.APPROVED
        result = release_one(
            ctx.session,
            gw,
            p,
            actor_sub=ctx.user.sub,
            approval={"id": a.id, "approved_by": ctx.user.sub, "reason": ctx.reason},
        )
        results.append(result)
        if result.result == "released":
            entry = record(
                ctx.session,
                action="payouts:payout:release",
                outcome="success",
                actor=ctx.user.actor(),
                target_type="payout",
                target_id=p.external_id,
                reason=ctx.reason,
                params={"approval_id": a.id},
                details={"transfer_id": result.transfer_id, **result.details},
            )
            emit(
                ctx.session,
                "payout.released",
                p,
                actor=ctx.user.actor(),
                reason=ctx.reason,
                audit_seq=entry.seq,
            )
        for item in a.items:
            if item.payout_id == p.id:
                item.result, item.message = result.result, result.message
    if all(r.result == "released" for r in results):
        a.status = ApprovalStatus.EXECUTED
    released = [r for r in results if r.result == "released"]
    summary = "; ".join(
        f"{r.payout} {r.result}" + (f" ({r.transfer_id})" if r.transfer_id else "") for r in results
    )
    return Outcome(
        f"Approved and released {len(released)} of {len(results)}: {summary}",
        {"results": [r.__dict__ for r in results]},
        level="success" if len(released) == len(results) else "warning",
    )


approve = declare(
    Action[Approval](
        name="payouts:release:approve",
        label="Approve and release",
        permission=Permission.PAYOUTS_RELEASE_APPROVE,
        target_type="approval",
        load=load_approval,
        precondition=_pending,
        describe=lambda a: [
            *_approval_describe(a),
            (
                "Effect",
                "Re-checks every payout; if anything changed since the request the approval "
                "is voided. Otherwise Stripe transfers exactly these amounts now.",
            ),
        ],
        effect=_approve_effect,
        snapshot=approval_snapshot,
        return_url=approvals_url,
        changes=_approval_payouts,
        high_risk=True,
    )
)


def _reject_effect(ctx: ActionContext, a: Approval) -> Outcome:
    payouts, _ = changes_since_request(ctx.session, a)
    a.status = ApprovalStatus.REJECTED
    a.decided_by_sub = ctx.user.sub
    a.decided_at = utcnow()
    a.decision_reason = ctx.reason
    for p in payouts:
        if p.status == PayoutStatus.PENDING_APPROVAL:
            p.status = PayoutStatus.ELIGIBLE
    return Outcome(f"Release request #{a.id} rejected; nothing was transferred.")


reject = declare(
    Action[Approval](
        name="payouts:release:reject",
        label="Reject",
        permission=Permission.PAYOUTS_RELEASE_APPROVE,
        target_type="approval",
        load=load_approval,
        precondition=_pending,
        describe=lambda a: [
            *_approval_describe(a),
            ("Effect", "Rejects the request; the payouts go back to the ready queue."),
        ],
        effect=_reject_effect,
        snapshot=approval_snapshot,
        return_url=approvals_url,
        changes=_approval_payouts,
        danger=True,
    )
)


# ------------------------------------------------------------------ request a selection

SELECTION_LIMIT = 1000


@dataclass
class PayoutSelection:
    """The ready payouts a filter selects; its id is the filter's query string."""

    query: str
    payouts: list[SellerPayout] = field(default_factory=list)

    @property
    def total(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for p in self.payouts:
            totals[p.currency] = totals.get(p.currency, 0) + p.amount
        return totals


def load_payout_selection(s: Session, query: str, lock: bool) -> PayoutSelection:
    from console.payouts.eligibility import ready_condition
    from console.payouts.models import Seller

    q = dict(parse_qsl("" if query == "all" else query)).get("q", "").strip()
    stmt = (
        select(SellerPayout)
        .join(Seller, Seller.id == SellerPayout.seller_id)
        .where(ready_condition(utcnow()), SellerPayout.status != PayoutStatus.PENDING_APPROVAL)
        .options(selectinload(SellerPayout.seller))
        .order_by(SellerPayout.id)
        .limit(SELECTION_LIMIT)
    )
    if q:
        stmt = stmt.where(
            (SellerPayout.external_id == q)
            | (SellerPayout.destination_account == q)
            | (Seller.email == q.lower())
        )
    if lock:
        stmt = stmt.with_for_update(of=SellerPayout, skip_locked=True)
    return PayoutSelection(query, list(s.scalars(stmt)))


def selection_id(q: str) -> str:
    return urlencode({"q": q}) if q else "all"


def _request_selection_effect(ctx: ActionContext, sel: PayoutSelection) -> Outcome:
    approval = request_release(ctx.session, sel.payouts, actor=ctx.user.actor(), reason=ctx.reason)
    return Outcome(
        f"Release of {len(sel.payouts)} payouts requested (approval #{approval.id}); a "
        "different admin must approve it.",
        {"approval_id": approval.id, "payload_hash": approval.payload_hash},
    )


request_selection = declare(
    Action[PayoutSelection](
        name="payouts:selection:request",
        label="Request release of all shown",
        permission=Permission.PAYOUTS_RELEASE_REQUEST,
        target_type="payout_selection",
        load=load_payout_selection,
        precondition=lambda sel: None if sel.payouts else "no payout is ready in this selection.",
        describe=lambda sel: [
            ("Payouts", f"{len(sel.payouts)} (at most {SELECTION_LIMIT})"),
            ("Total", ", ".join(money(v, c) for c, v in sel.total.items()) or "—"),
            (
                "Effect",
                "One approval request for exactly these payouts, amounts and accounts; "
                "on approval each is transferred row by row with its own key.",
            ),
        ],
        effect=_request_selection_effect,
        snapshot=lambda sel: {"payouts": [p.external_id for p in sel.payouts]},
        changes=lambda sel: list(sel.payouts),
        return_url=lambda sel: url_for("payouts.approvals"),
    )
)
