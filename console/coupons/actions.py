"""Guarded actions on coupon reservation leaks (runbook 002).

Release expired reservations (support): of one coupon, or of all coupons at
once; each released reservation gives its coupon one count back. Repair the
reserved count (admin): set it to the reservations the coupon really holds.
Each confirm step previews the counts before and after; the audit entry
records them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import url_for
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from console.actions.framework import (
    Action,
    ActionContext,
    ActionError,
    Outcome,
    declare,
    loader,
)
from console.audit.service import record
from console.coupons.models import Coupon, CouponReservation
from console.coupons.queries import CouponFacts, facts_of, forget, leak_condition, prefetch
from console.coupons.services import ReleaseReport, release_expired, repair_reserved_count
from console.db import utcnow
from console.security.permissions import Permission

load_coupon = loader(Coupon, Coupon.code)
RELEASE_ALL_LOCK = 11_003  # advisory lock: one "release all" at a time
BULK_LIMIT = 5000


def _facts(coupon: Coupon) -> CouponFacts:
    from sqlalchemy.orm import object_session

    s = object_session(coupon)
    assert s is not None
    return facts_of(s, coupon, utcnow())


def coupon_snapshot(coupon: Coupon) -> dict[str, Any]:
    forget(coupon)  # always the database's numbers, never a page's prefetch
    f = _facts(coupon)
    return {
        "reserved_count": coupon.reserved_count,
        "held": f.held,
        "live": f.live,
        "expired_held": f.expired,
    }


def coupon_url(coupon: Coupon) -> str:
    return url_for("coupons.detail", code=coupon.code)


def coupon_row(coupon: Coupon) -> tuple[str, str, dict[str, Any]]:
    from sqlalchemy.orm import object_session

    s = object_session(coupon)
    assert s is not None
    facts = prefetch(s, [coupon], utcnow())
    return "coupons/leaks.html", "row", {"coupon": coupon, "facts": facts}


def _report_details(report: ReleaseReport) -> dict[str, Any]:
    return {
        "released": report.released,
        "coupons": [
            {
                "code": c.code,
                "released": c.released,
                "reserved_count_before": c.reserved_before,
                "reserved_count_after": c.reserved_after,
            }
            for c in report.coupons
        ],
        "skipped_coupons": report.skipped_coupons,
    }


# ------------------------------------------------------------------ release (one coupon)


def _release_precondition(coupon: Coupon) -> str | None:
    if _facts(coupon).expired == 0:
        return f"no expired reservation holds coupon {coupon.code}."
    return None


def _release_describe(coupon: Coupon) -> list[tuple[str, str]]:
    f = _facts(coupon)
    return [
        ("Coupon", coupon.code),
        ("Expired reservations still held", str(f.expired)),
        ("Live reservations", str(f.live)),
        ("Reserved count", str(coupon.reserved_count)),
        (
            "Effect",
            "Marks each expired reservation of this coupon expired and takes it off the "
            "coupon's reserved count, as `coupons expire-reservations` would. Live "
            "reservations are not touched.",
        ),
    ]


def _release_preview(_s: Session, coupon: Coupon, _params: dict[str, Any]) -> list[tuple[str, str]]:
    f = _facts(coupon)
    after = max(coupon.reserved_count - f.expired, 0)
    lines = [
        ("Expired reservations", f"{f.expired} → 0"),
        ("Reserved count", f"{coupon.reserved_count} → {after}"),
        ("Live reservations", f"{f.live} (unchanged)"),
    ]
    if after != f.live:
        lines.append(
            (
                "Still wrong after this",
                f"the reserved count would be {after} for {f.live} live reservation(s): "
                "an admin repairs it with Repair reserved count.",
            )
        )
    return lines


def _release_effect(ctx: ActionContext, coupon: Coupon) -> Outcome:
    report = release_expired(ctx.session, coupon_id=coupon.id)
    forget(coupon)
    if not report.coupons:
        raise ActionError(
            "The expired reservations of this coupon are being released by another job right "
            "now; reload the page in a moment.",
            status=409,
        )
    [c] = report.coupons
    return Outcome(
        f"Released {c.released} expired reservation(s) of {c.code}: reserved count "
        f"{c.reserved_before} → {c.reserved_after}.",
        _report_details(report),
    )


release_coupon = declare(
    Action[Coupon](
        name="coupons:reservation:release",
        label="Release expired reservations",
        permission=Permission.COUPONS_RESERVATION_RELEASE,
        target_type="coupon",
        load=load_coupon,
        precondition=_release_precondition,
        describe=_release_describe,
        effect=_release_effect,
        snapshot=coupon_snapshot,
        return_url=lambda c: url_for("coupons.leaks"),
        preview=_release_preview,
        row=coupon_row,
    )
)


# ------------------------------------------------------------------ repair the count


def _repair_precondition(coupon: Coupon) -> str | None:
    f = _facts(coupon)
    if f.expired:
        return (
            f"{f.expired} expired reservation(s) still hold {coupon.code}: release them first "
            "(that also corrects the count for them)."
        )
    if coupon.reserved_count == f.held:
        return f"the reserved count of {coupon.code} already matches its {f.held} reservation(s)."
    return None


def _repair_describe(coupon: Coupon) -> list[tuple[str, str]]:
    f = _facts(coupon)
    return [
        ("Coupon", coupon.code),
        ("Reserved count", str(coupon.reserved_count)),
        ("Live reservations", str(f.live)),
        (
            "Effect",
            "Sets the coupon's reserved count to the number of reservations it really holds. "
            "No reservation changes.",
        ),
    ]


def _repair_preview(_s: Session, coupon: Coupon, _params: dict[str, Any]) -> list[tuple[str, str]]:
    f = _facts(coupon)
    return [
        ("Reserved count", f"{coupon.reserved_count} → {f.held}"),
        ("Live reservations", f"{f.live} (unchanged)"),
        ("Redemptions left", _left(coupon, coupon.reserved_count) + " → " + _left(coupon, f.held)),
    ]


def _left(coupon: Coupon, reserved: int) -> str:
    if coupon.max_redemptions is None:
        return "unlimited"
    return str(max(coupon.max_redemptions - coupon.redeemed_count - reserved, 0))


def _repair_effect(ctx: ActionContext, coupon: Coupon) -> Outcome:
    before, after = repair_reserved_count(ctx.session, coupon)
    forget(coupon)
    return Outcome(
        f"Reserved count of {coupon.code} repaired: {before} → {after} "
        f"({after} live reservation(s)).",
        {"reserved_count_before": before, "reserved_count_after": after},
    )


repair_count = declare(
    Action[Coupon](
        name="coupons:reserved_count:repair",
        label="Repair reserved count",
        permission=Permission.COUPONS_RESERVATION_REPAIR,
        target_type="coupon",
        load=load_coupon,
        precondition=_repair_precondition,
        describe=_repair_describe,
        effect=_repair_effect,
        snapshot=coupon_snapshot,
        return_url=lambda c: url_for("coupons.leaks"),
        preview=_repair_preview,
        seen=lambda c: {"reserved_count": c.reserved_count, "held": _facts(c).held},
        row=coupon_row,
        reason_help="Why the count is wrong, if known (e.g. a double release during the outage).",
    )
)


# ------------------------------------------------------------------ release all


@dataclass
class LeakSelection:
    """Every expired reservation still holding a coupon: the target of 'release all'."""

    expired: int
    by_coupon: list[tuple[str, int, int]] = field(default_factory=list)
    """(code, expired, reserved count) per coupon, largest first."""
    busy: bool = False
    external_id: str = "all"


def load_leaks(s: Session, _key: str, lock: bool) -> LeakSelection:
    busy = False
    if lock:
        busy = not s.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": RELEASE_ALL_LOCK})
    rows = s.execute(
        select(Coupon.code, func.count(CouponReservation.id), Coupon.reserved_count)
        .join(Coupon, Coupon.id == CouponReservation.coupon_id)
        .where(leak_condition(utcnow()))
        .group_by(Coupon.code, Coupon.reserved_count)
        .order_by(func.count(CouponReservation.id).desc(), Coupon.code)
    ).all()
    by_coupon = [(code, int(n), int(rc)) for code, n, rc in rows]
    return LeakSelection(sum(n for _, n, _ in by_coupon), by_coupon, busy)


def _all_precondition(sel: LeakSelection) -> str | None:
    if sel.busy:
        return "someone else is releasing all expired reservations right now."
    if sel.expired == 0:
        return "no expired reservation holds any coupon."
    return None


def _all_preview(_s: Session, sel: LeakSelection, _params: dict[str, Any]) -> list[tuple[str, str]]:
    lines = [("Expired reservations", f"{sel.expired} → 0")]
    for code, n, rc in sel.by_coupon[:20]:
        lines.append((code, f"reserved count {rc} → {max(rc - n, 0)} ({n} released)"))
    if len(sel.by_coupon) > 20:
        lines.append(("…", f"{len(sel.by_coupon) - 20} more coupons"))
    return lines


def _all_effect(ctx: ActionContext, sel: LeakSelection) -> Outcome:
    report = release_expired(ctx.session, limit=BULK_LIMIT)
    for c in report.coupons:  # each coupon's own history shows the release too
        record(
            ctx.session,
            action="coupons:reservation:release",
            outcome="success",
            actor=ctx.user.actor(),
            target_type="coupon",
            target_id=c.code,
            reason=ctx.reason,
            ticket=ctx.ticket,
            params={"via": "coupons:reservation:release_all"},
            before={"reserved_count": c.reserved_before},
            after={"reserved_count": c.reserved_after},
            details={"released": c.released},
        )
    fresh = load_leaks(ctx.session, sel.external_id, False)
    sel.expired, sel.by_coupon = fresh.expired, fresh.by_coupon  # the "after" of the audit
    left = ""
    if report.skipped_coupons:
        left = f"; {len(report.skipped_coupons)} coupon(s) no longer exist"
    return Outcome(
        f"Released {report.released} expired reservation(s) of {len(report.coupons)} coupon(s)"
        f"{left}: "
        + ", ".join(f"{c.code} {c.reserved_before} → {c.reserved_after}" for c in report.coupons),
        _report_details(report),
        level="success" if not report.skipped_coupons else "warning",
    )


release_all = declare(
    Action[LeakSelection](
        name="coupons:reservation:release_all",
        label="Release all expired reservations",
        permission=Permission.COUPONS_RESERVATION_RELEASE,
        target_type="coupon_leaks",
        load=load_leaks,
        precondition=_all_precondition,
        describe=lambda sel: [
            ("Expired reservations", f"{sel.expired} across {len(sel.by_coupon)} coupon(s)"),
            (
                "Effect",
                "Marks every reservation past its expiry that still holds a coupon expired, and "
                "takes each off its coupon's reserved count (at most "
                f"{BULK_LIMIT:,} at once). Rows the cron job is expiring right now are left "
                "to it, so none is released twice.",
            ),
        ],
        effect=_all_effect,
        snapshot=lambda sel: {
            "expired": sel.expired,
            "coupons": {code: rc for code, _, rc in sel.by_coupon},
        },
        return_url=lambda sel: url_for("coupons.leaks"),
        preview=_all_preview,
    )
)
