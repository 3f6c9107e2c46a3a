"""Ready-to-release payouts, blocked ones with their reasons, approvals."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from flask import Blueprint, abort, render_template, request
from flask_login import login_required
from jinja2_fragments.flask import render_block
from sqlalchemy import or_, select
from sqlalchemy.orm import selectinload

from console import db
from console.audit.queries import history_for
from console.db import one_of, utcnow
from console.orders.models import Order
from console.pagination import SortOption, keyset_page
from console.payouts.actions import PayoutSelection, selection_id
from console.payouts.eligibility import (
    ineligibility_reasons,
    payout_state,
    protection_words,
    ready_condition,
)
from console.payouts.models import Approval, ApprovalStatus, PayoutStatus, Seller, SellerPayout
from console.payouts.release import progress
from console.security.guards import require
from console.security.permissions import Permission

bp = Blueprint("payouts", __name__)

SORTS = [
    SortOption("protection", "Protection ended", SellerPayout.protection_ends_at),
    SortOption("amount", "Amount", SellerPayout.amount),
    SortOption("created", "Created", SellerPayout.created_at),
]
OPEN_STATUSES = [PayoutStatus.HELD, PayoutStatus.ELIGIBLE, PayoutStatus.PENDING_APPROVAL]


@bp.get("/payouts/ready")
@login_required
@require(Permission.QUEUES_VIEW)
def ready() -> Any:
    """Eligible payouts (default) or, with `?tab=blocked`, held ones and why."""
    s = db.session()
    args = request.args.to_dict()
    tab = "blocked" if args.get("tab") == "blocked" else "ready"
    now = utcnow()
    stmt = (
        select(SellerPayout)
        .join(Seller, Seller.id == SellerPayout.seller_id)
        .options(selectinload(SellerPayout.seller))
    )
    if tab == "ready":
        stmt = stmt.where(ready_condition(now))
    else:
        stmt = stmt.where(SellerPayout.status.in_(OPEN_STATUSES), ~ready_condition(now))
    q = args.get("q", "").strip()
    if q:
        stmt = stmt.where(
            or_(
                SellerPayout.external_id == q,
                SellerPayout.destination_account == q,
                Seller.email == q.lower(),
            )
        )
    page = keyset_page(
        s,
        stmt,
        id_column=SellerPayout.id,
        sort_options=SORTS,
        args=args,
        default_sort="created",
        default_direction="asc",
    )
    totals: dict[str, int] = defaultdict(int)
    for p in page.rows:
        totals[p.currency] += p.amount
    reasons = {p.id: ineligibility_reasons(p, now) for p in page.rows} if tab == "blocked" else {}
    states = {p.id: payout_state(p, now) for p in page.rows}
    protection = {p.id: protection_words(p, now) for p in page.rows}
    order_ids = {p.order_id for p in page.rows}
    orders: dict[int, str] = {}
    if order_ids:
        for order_id, external_id in s.execute(
            select(Order.id, Order.external_id).where(one_of(Order.id, order_ids))
        ):
            orders[order_id] = external_id
    requestable = [p for p in page.rows if p.status != PayoutStatus.PENDING_APPROVAL]
    bulk = PayoutSelection(selection_id(q), requestable)
    return render_template(
        "payouts/ready.html",
        page=page,
        tab=tab,
        args=args,
        totals=totals,
        reasons=reasons,
        states=states,
        protection=protection,
        bulk=bulk,
        orders=orders,
    )


@bp.get("/payouts/<external_id>")
@login_required
@require(Permission.QUEUES_VIEW)
def detail(external_id: str) -> Any:
    s = db.session()
    payout = s.scalar(
        select(SellerPayout)
        .where(SellerPayout.external_id == external_id)
        .options(selectinload(SellerPayout.seller))
    )
    if payout is None:
        abort(404, f"There is no payout {external_id}.")
    now = utcnow()
    return render_template(
        "payouts/detail.html",
        payout=payout,
        # "Not releasable" only means something while the funds are still held.
        reasons=ineligibility_reasons(payout, now)
        if payout.status in (PayoutStatus.HELD, PayoutStatus.ELIGIBLE)
        else [],
        state=payout_state(payout, now),
        protection=protection_words(payout, now),
        history_entries=history_for(s, "payout", payout.external_id),
    )


@bp.get("/approvals")
@login_required
@require(Permission.QUEUES_VIEW)
def approvals() -> Any:
    """Release requests waiting for a second admin, and recent decisions."""
    s = db.session()
    pending = s.scalars(
        select(Approval)
        .where(Approval.status == ApprovalStatus.PENDING)
        .order_by(Approval.requested_at)
        .options(selectinload(Approval.items))
    ).all()
    running = s.scalars(
        select(Approval)
        .where(Approval.status == ApprovalStatus.APPROVED)
        .order_by(Approval.id)
        .options(selectinload(Approval.items))
    ).all()
    recent = s.scalars(
        select(Approval)
        .where(Approval.status.not_in([ApprovalStatus.PENDING, ApprovalStatus.APPROVED]))
        .order_by(Approval.id.desc())
        .limit(20)
    ).all()
    return render_template(
        "payouts/approvals.html",
        pending=pending,
        running=[(a, progress(a)) for a in running],
        recent=recent,
    )


@bp.get("/approvals/<int(min=1, max=2147483647):approval_id>/progress")
@login_required
@require(Permission.QUEUES_VIEW)
def approval_progress(approval_id: int) -> Any:
    """The polling fragment of a release in progress (stops polling when done)."""
    a = db.session().scalar(
        select(Approval).where(Approval.id == approval_id).options(selectinload(Approval.items))
    )
    if a is None:
        abort(404)
    return render_block("payouts/approvals.html", "progress", a=a, p=progress(a))
