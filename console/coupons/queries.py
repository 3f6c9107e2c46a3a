"""Which coupons leak reservations, and what their counts should be (runbook 002).

For a coupon, `held` is the number of its reservations still `reserved`
(the invariant: `reserved_count == held`), `live` those of them not yet
expired, and `expired` the leaked ones (held past `expires_at`). A coupon
needs attention when it has expired holds, or when its reserved count
differs from what it holds. Each predicate is its own index-backed query
(leaks: ix_coupon_reservations_leaks; counts: ix_coupons_reserved plus the
held reservations), joined by UNION, never an OR of subqueries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import g, has_request_context
from sqlalchemy import Select, and_, func, select, union
from sqlalchemy.orm import Session

from console.coupons.models import Coupon, CouponReservation, CouponReservationStatus
from console.db import one_of


def leak_condition(now: datetime) -> Any:
    """A reservation past `expires_at` still holding its coupon."""
    return and_(
        CouponReservation.status == CouponReservationStatus.RESERVED,
        CouponReservation.expires_at < now,
    )


def held_counts() -> Any:
    """Reservations still `reserved`, per coupon (a subquery)."""
    return (
        select(CouponReservation.coupon_id, func.count(CouponReservation.id).label("held"))
        .where(CouponReservation.status == CouponReservationStatus.RESERVED)
        .group_by(CouponReservation.coupon_id)
        .subquery()
    )


def count_mismatch_ids() -> Any:
    """Coupons whose reserved count is not the number of reservations they hold."""
    held = held_counts()
    claims_too_many = (
        select(Coupon.id)
        .outerjoin(held, held.c.coupon_id == Coupon.id)
        .where(Coupon.reserved_count > 0, Coupon.reserved_count != func.coalesce(held.c.held, 0))
    )
    counts_none = (
        select(held.c.coupon_id)
        .join(Coupon, Coupon.id == held.c.coupon_id)
        .where(Coupon.reserved_count == 0)
    )
    return union(claims_too_many, counts_none)


def leaking_ids(now: datetime) -> Any:
    return select(CouponReservation.coupon_id).where(leak_condition(now))


def attention_statement(now: datetime, code: str = "") -> Select[Any]:
    """Coupons with expired holds or a wrong reserved count."""
    ids = union(leaking_ids(now), count_mismatch_ids()).subquery()
    stmt = select(Coupon).where(Coupon.id.in_(select(ids.c[0])))
    code = code.strip().upper()
    if code:
        stmt = stmt.where(func.upper(Coupon.code).startswith(code, autoescape=True))
    return stmt


def leaks_count_statement(now: datetime) -> Select[Any]:
    return select(func.count(CouponReservation.id)).where(leak_condition(now))


def mismatches_count_statement() -> Select[Any]:
    return select(func.count()).select_from(count_mismatch_ids().subquery())


@dataclass(frozen=True)
class CouponFacts:
    held: int = 0
    expired: int = 0
    oldest_expired_at: datetime | None = None

    @property
    def live(self) -> int:
        return self.held - self.expired


def facts_for(s: Session, coupon_ids: Sequence[int], now: datetime) -> dict[int, CouponFacts]:
    """Held, expired and the oldest expiry of each coupon, in one query."""
    if not coupon_ids:
        return {}
    expired = CouponReservation.expires_at < now
    rows = s.execute(
        select(
            CouponReservation.coupon_id,
            func.count(CouponReservation.id),
            func.count(CouponReservation.id).filter(expired),
            func.min(CouponReservation.expires_at).filter(expired),
        )
        .where(
            one_of(CouponReservation.coupon_id, coupon_ids),
            CouponReservation.status == CouponReservationStatus.RESERVED,
        )
        .group_by(CouponReservation.coupon_id)
    )
    return {
        coupon_id: CouponFacts(int(held), int(n_expired), oldest)
        for coupon_id, held, n_expired, oldest in rows
    }


def prefetch(s: Session, coupons: Sequence[Coupon], now: datetime) -> dict[int, CouponFacts]:
    """Facts for a page of coupons, kept for the preconditions that decide its buttons."""
    facts = facts_for(s, [c.id for c in coupons], now)
    if has_request_context():
        cache: dict[int, CouponFacts] = g.setdefault("coupon_facts", {})
        cache.update({c.id: facts.get(c.id, CouponFacts()) for c in coupons})
    return facts


def forget(coupon: Coupon) -> None:
    """Drop a coupon's prefetched facts (after an action changed them)."""
    if has_request_context():
        g.get("coupon_facts", {}).pop(coupon.id, None)


def facts_of(s: Session, coupon: Coupon, now: datetime) -> CouponFacts:
    """The prefetched facts of a coupon, else a fresh query (POST re-checks query)."""
    if has_request_context():
        cached: CouponFacts | None = g.get("coupon_facts", {}).get(coupon.id)
        if cached is not None:
            return cached
    return facts_for(s, [coupon.id], now).get(coupon.id, CouponFacts())
