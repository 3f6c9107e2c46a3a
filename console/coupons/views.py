"""Coupon reservation leaks (runbook 002) and the coupon page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template, request
from flask_login import login_required
from sqlalchemy import select

from console import db
from console.audit.queries import history_for
from console.coupons.actions import load_leaks
from console.coupons.models import Coupon, CouponReservation, CouponReservationStatus
from console.coupons.queries import attention_statement, facts_for, prefetch
from console.db import utcnow
from console.ops.jobs import JOBS, job_health
from console.ops.models import JobRun
from console.orders.models import Order
from console.pagination import SortOption, keyset_page
from console.security.guards import require
from console.security.permissions import Permission

bp = Blueprint("coupons", __name__)

EXPIRY_JOB = "coupons-expire-reservations"
SORTS = [
    SortOption("code", "Coupon", Coupon.code),
    SortOption("reserved", "Reserved count", Coupon.reserved_count),
]
RESERVATIONS_SHOWN = 100


def last_expiry_run(s: Any) -> tuple[JobRun | None, bool]:
    """The newest run of the cron expiry job, and whether the job is late."""
    run = s.scalar(
        select(JobRun).where(JobRun.job == EXPIRY_JOB).order_by(JobRun.id.desc()).limit(1)
    )
    late = next(h.late for h in job_health(s, utcnow()) if h.spec.name == EXPIRY_JOB)
    return run, late


@bp.get("/coupons/leaks")
@login_required
@require(Permission.QUEUES_VIEW)
def leaks() -> Any:
    """Coupons held by expired reservations, or whose reserved count is wrong."""
    s = db.session()
    now = utcnow()
    args = request.args.to_dict()
    code = (args.get("code") or "").strip()[:64]
    page = keyset_page(
        s,
        attention_statement(now, code),
        id_column=Coupon.id,
        sort_options=SORTS,
        args=args,
        default_sort="code",
        default_direction="asc",
    )
    facts = prefetch(s, page.rows, now)
    expiry_run, expiry_late = last_expiry_run(s)
    return render_template(
        "coupons/leaks.html",
        page=page,
        code=code,
        facts=facts,
        leaks=load_leaks(s, "all", False),
        expiry_run=expiry_run,
        expiry_late=expiry_late,
        expiry_spec=JOBS[EXPIRY_JOB],
    )


@bp.get("/coupons/<code>")
@login_required
@require(Permission.QUEUES_VIEW)
def detail(code: str) -> Any:
    """One coupon: its counts, the reservations it holds and its history."""
    s = db.session()
    coupon = s.scalar(select(Coupon).where(Coupon.code == code))
    if coupon is None:
        abort(404, f"There is no coupon {code}.")
    now = utcnow()
    facts = prefetch(s, [coupon], now)
    reservations = s.execute(
        select(CouponReservation, Order.external_id)
        .outerjoin(Order, Order.id == CouponReservation.order_id)
        .where(
            CouponReservation.coupon_id == coupon.id,
            CouponReservation.status == CouponReservationStatus.RESERVED,
        )
        .order_by(CouponReservation.expires_at, CouponReservation.id)
        .limit(RESERVATIONS_SHOWN)
    ).all()
    return render_template(
        "coupons/detail.html",
        coupon=coupon,
        f=facts.get(coupon.id) or facts_for(s, [coupon.id], now).get(coupon.id),
        reservations=reservations,
        now=now,
        history_entries=history_for(s, "coupon", coupon.code),
    )
