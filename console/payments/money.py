"""The money-movement protocol (DESIGN.md): attempt, call, outcome.

1. `begin` records the attempt (deterministic idempotency key, payload) and
   commits it in its own transaction, before Stripe is called;
2. the caller calls Stripe with that key;
3. `succeed` records the outcome in the caller's transaction (committed with
   the state change and its audit entry); `fail` records a definite refusal.

A crash between Stripe's success and step 3 leaves the attempt `in_flight`;
`resume` re-issues the same key, which Stripe answers with the original
object, and applies it through the finisher the queue registered for that
kind. So there is at most one refund or transfer per attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from console.db import separate_session, utcnow
from console.payments.gateway import GatewayError, StripeGateway
from console.payments.models import MoneyMovement, MovementKind, MovementStatus

log = logging.getLogger(__name__)


def begin(
    *,
    kind: MovementKind,
    idempotency_key: str,
    target_type: str,
    target_id: str,
    amount: int,
    currency: str,
    payload: dict[str, Any],
    actor_sub: str | None,
) -> MoneyMovement:
    """Record (or find) the attempt and commit it before any Stripe call."""
    with separate_session() as s:
        existing = s.scalar(
            select(MoneyMovement).where(MoneyMovement.idempotency_key == idempotency_key)
        )
        if existing is not None:
            return existing
        movement = MoneyMovement(
            kind=kind,
            idempotency_key=idempotency_key,
            target_type=target_type,
            target_id=target_id,
            amount=amount,
            currency=currency.upper(),
            payload=payload,
            status=MovementStatus.IN_FLIGHT,
            actor_sub=actor_sub,
        )
        s.add(movement)
        s.commit()
        return movement


def succeed(s: Session, movement_id: int, stripe_object_id: str) -> MoneyMovement:
    """Mark the attempt done, in the caller's transaction."""
    movement = s.get(MoneyMovement, movement_id, with_for_update=True)
    if movement is None:
        raise LookupError(f"money movement {movement_id} vanished")
    movement.status = MovementStatus.SUCCEEDED
    movement.stripe_object_id = stripe_object_id
    movement.calls += 1
    movement.error = None
    movement.updated_at = utcnow()
    return movement


def note_call(movement_id: int, error: str | None, *, failed: bool) -> None:
    """Record a call that did not succeed (own transaction): failed, or still in flight."""
    with separate_session() as s:
        movement = s.get(MoneyMovement, movement_id, with_for_update=True)
        if movement is None or movement.status == MovementStatus.SUCCEEDED:
            return
        movement.calls += 1
        movement.error = (error or "")[:2000] or None
        if failed:
            movement.status = MovementStatus.FAILED
        s.commit()


def in_flight_for(s: Session, target_type: str, target_id: str) -> MoneyMovement | None:
    return s.scalar(
        select(MoneyMovement).where(
            MoneyMovement.target_type == target_type,
            MoneyMovement.target_id == target_id,
            MoneyMovement.status == MovementStatus.IN_FLIGHT,
        )
    )


# A finisher re-issues the Stripe call of an in-flight attempt (same key) and
# applies the result to its queue's records, without committing.
Finisher = Callable[[Session, StripeGateway, MoneyMovement], str]
FINISHERS: dict[MovementKind, Finisher] = {}


def finisher(kind: MovementKind) -> Callable[[Finisher], Finisher]:
    def register(fn: Finisher) -> Finisher:
        FINISHERS[kind] = fn
        return fn

    return register


@dataclass
class ResumeReport:
    scanned: int = 0
    finished: int = 0
    failed: int = 0
    still_in_flight: int = 0
    last_error: str | None = None


def resume(s: Session, gw: StripeGateway, *, dry_run: bool = False) -> ResumeReport:
    """Finish every in-flight attempt by re-issuing its key; safe to run twice at once."""
    report = ResumeReport()
    ids = list(
        s.scalars(
            select(MoneyMovement.id)
            .where(MoneyMovement.status == MovementStatus.IN_FLIGHT)
            .order_by(MoneyMovement.id)
        )
    )
    s.rollback()
    for movement_id in ids:
        movement = s.scalar(
            select(MoneyMovement)
            .where(
                MoneyMovement.id == movement_id, MoneyMovement.status == MovementStatus.IN_FLIGHT
            )
            .with_for_update(skip_locked=True)
        )
        if movement is None:
            s.rollback()
            continue
        report.scanned += 1
        if dry_run:
            s.rollback()
            continue
        fn = FINISHERS.get(movement.kind)
        if fn is None:
            s.rollback()
            report.still_in_flight += 1
            continue
        try:
            stripe_id = fn(s, gw, movement)
            succeed(s, movement.id, stripe_id)
            s.commit()
            report.finished += 1
        except GatewayError as exc:
            s.rollback()
            report.last_error = str(exc)
            if exc.retryable:
                note_call(movement_id, str(exc), failed=False)
                report.still_in_flight += 1
            else:
                note_call(movement_id, str(exc), failed=True)
                report.failed += 1
        except Exception as exc:
            s.rollback()
            log.exception("resume of money movement %s failed", movement_id)
            report.last_error = f"{type(exc).__name__}: {exc}"
            note_call(movement_id, report.last_error, failed=False)
            report.still_in_flight += 1
    return report
