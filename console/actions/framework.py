"""The guarded action: declared once, run the same way for every button.

A declaration names the action (its audit tag `domain:object:verb`), the
permission it needs, how to load and lock its target, the precondition, the
consequences to show, the form, whether it is high-risk (step-up) and the
effect (a service function). `run_action` does the rest:

permission -> form -> step-up -> idempotency -> lock target (NOWAIT) -> re-check
precondition -> effect -> audit entry -> one commit.

A denial, a stale page and a failed effect each leave an audit entry too.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from flask_wtf import FlaskForm
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session
from wtforms import HiddenField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, Regexp

from console.actions.models import IdempotencyRecord
from console.audit.service import record, record_now
from console.security.permissions import Permission
from console.security.users import CurrentUser

log = logging.getLogger(__name__)

T = TypeVar("T")

REASON_MIN = 10
REASON_MAX = 2000


class ActionError(Exception):
    """The effect refused or failed in a way the user should read.

    `status` is the HTTP status to answer with; the transaction is rolled
    back and a `failed` audit entry records `message`.
    """

    def __init__(self, message: str, status: int = 422, details: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.details = dict(details or {})


class ActionForm(FlaskForm):
    """The fields every confirm step has; declarations subclass it for parameters."""

    reason = TextAreaField(
        "Reason",
        validators=[
            DataRequired("A reason is required."),
            Length(
                min=REASON_MIN,
                max=REASON_MAX,
                message=f"Write at least {REASON_MIN} characters (at most {REASON_MAX}).",
            ),
        ],
    )
    ticket = StringField(
        "Ticket id",
        validators=[
            Optional(),
            Length(max=64),
            Regexp(r"^[A-Za-z0-9][A-Za-z0-9._#/-]*$", message="Letters, digits and ._#/- only."),
        ],
    )
    idempotency_key = HiddenField(
        validators=[
            DataRequired("The form is missing its idempotency key; reload the page."),
            Regexp(r"^[A-Za-z0-9-]{16,64}$", message="Malformed idempotency key; reload the page."),
        ]
    )
    next = HiddenField()


@dataclass
class Outcome:
    """What an effect reports back: a message for the flash, data for the audit."""

    message: str
    details: dict[str, Any] = field(default_factory=dict)
    level: str = "success"
    """`warning` when the action ran but its result needs attention (e.g. a retry failed)."""
    reveal: str | None = None
    """A secret to show once (a new API key): shown in the response, never stored or audited."""
    reveal_label: str = "Secret"


@dataclass
class ActionContext:
    """What an effect may use: the session (no commits), the actor, the form."""

    session: Session
    user: CurrentUser
    form: ActionForm
    params: dict[str, Any]
    reason: str
    ticket: str | None
    idempotency_key: str


@dataclass(frozen=True)
class Action(Generic[T]):
    """A declared guarded action."""

    name: str
    label: str
    permission: Permission
    target_type: str
    load: Callable[[Session, str, bool], T | None]
    """Load the target by id; lock it when the flag is true."""
    precondition: Callable[[T], str | None]
    """None when the action may run; otherwise why not, in words."""
    describe: Callable[[T], list[tuple[str, str]]]
    """The consequences, as (what, value) lines for the confirm step."""
    effect: Callable[[ActionContext, T], Outcome]
    snapshot: Callable[[T], dict[str, Any]]
    """The fields an audit entry records before and after."""
    return_url: Callable[[T], str]
    form: type[ActionForm] = ActionForm
    params: Callable[[ActionForm], dict[str, Any]] = lambda form: {}
    preview: Callable[[Session, T, dict[str, Any]], list[tuple[str, str]]] | None = None
    ticket_required: bool = False
    high_risk: bool = False
    danger: bool = False
    reason_label: str = "Reason"
    reason_help: str = "Why you are doing this. It goes into the audit log as written."
    row: Callable[[T], tuple[str, str, dict[str, Any]]] | None = None
    """(template, block, context) that renders the target's row for an htmx swap."""
    prefill: Callable[[T, ActionForm], None] | None = None
    """Fill sensible defaults into a fresh form (e.g. the refundable amount)."""
    event: str | Callable[[Any], str | None] | None = None
    """The outbox event a success writes about each changed shop record, e.g.
    `"order.refunded"` (console/integrations/outbox.py EVENT_TYPES), or a function of
    the record giving the type or None (no event)."""
    event_records: Callable[[T], list[Any]] | None = None
    """The shop records the event is about, when the target is not one (default: [target])."""

    def available(self, target: T) -> bool:
        return self.precondition(target) is None


def loader(model: type[T], column: Any, *options: Any) -> Callable[[Session, str, bool], T | None]:
    """A target loader by a unique column; locking takes the row FOR UPDATE NOWAIT.

    NOWAIT: a second person acting on the same row gets a 409 at once (see
    `run_action`) instead of queueing behind the first with a connection held.
    """

    def load(s: Session, key: str, lock: bool) -> T | None:
        stmt = select(model).where(column == key)
        if options:
            stmt = stmt.options(*options)
        if lock:
            stmt = stmt.with_for_update(of=model, nowait=True)
        return s.scalar(stmt)

    return load


REGISTRY: dict[str, Action[Any]] = {}


def declare(action: Action[T]) -> Action[T]:
    """Register an action; the name is its URL and its audit tag."""
    if action.name in REGISTRY:
        raise ValueError(f"action {action.name} declared twice")
    parts = action.name.split(":")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"action name {action.name!r} is not domain:object:verb")
    REGISTRY[action.name] = action
    return action


def actions_for(target_type: str) -> list[Action[Any]]:
    return [a for a in REGISTRY.values() if a.target_type == target_type]


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


@dataclass
class RunResult:
    status: int
    message: str
    outcome: str  # success | denied | failed | replayed | stale | invalid | step_up
    audit_seq: int | None = None
    target: Any = None
    level: str = "success"
    reveal: str | None = None
    reveal_label: str = "Secret"


def audit_denied(action: Action[Any], user: CurrentUser, target_id: str, why: str) -> int | None:
    return record_now(
        action=action.name,
        outcome="denied",
        actor=user.actor(),
        target_type=action.target_type,
        target_id=target_id,
        details={"why": why},
    )


def run_action(
    s: Session, action: Action[T], target_id: str, form: ActionForm, user: CurrentUser
) -> RunResult:
    """Run a declared action for a validated form; the only commit point."""
    reason = (form.reason.data or "").strip()
    ticket = (form.ticket.data or "").strip() or None
    key = form.idempotency_key.data or ""
    params = action.params(form)

    previous = _find_idempotent(s, key)
    if previous is not None:
        return _replay(previous, action, target_id, user)

    try:
        try:
            target = action.load(s, target_id, True)
        except OperationalError as exc:
            if not _lock_not_available(exc):
                raise
            # Someone else is acting on this row right now: answer at once
            # instead of queueing behind them (and holding a connection).
            s.rollback()
            return RunResult(
                409,
                f"Someone else is acting on this {action.target_type} right now. Nothing was "
                "changed; reload the page in a moment to see the result.",
                "stale",
            )
        if target is None:
            s.rollback()
            return RunResult(404, f"No {action.target_type} {target_id} was found.", "failed")
        # After the lock: a concurrent submit with the same key may have committed.
        previous = _find_idempotent(s, key)
        if previous is not None:
            s.rollback()
            return _replay(previous, action, target_id, user)
        stale = action.precondition(target)
        if stale is not None:
            s.rollback()
            seq = record_now(
                action=action.name,
                outcome="failed",
                actor=user.actor(),
                target_type=action.target_type,
                target_id=target_id,
                reason=reason,
                ticket=ticket,
                params=params,
                details={"error": "precondition no longer holds", "why": stale},
            )
            return RunResult(
                409,
                f"Nothing was changed: {stale} The page you acted on was out of date; "
                "it has been refreshed.",
                "stale",
                seq,
            )
        before = action.snapshot(target)
        ctx = ActionContext(
            session=s,
            user=user,
            form=form,
            params=params,
            reason=reason,
            ticket=ticket,
            idempotency_key=key,
        )
        outcome = action.effect(ctx, target)
        s.flush()
        after = action.snapshot(target)
        entry = record(
            s,
            action=action.name,
            outcome="success",
            actor=user.actor(),
            target_type=action.target_type,
            target_id=target_id,
            reason=reason,
            ticket=ticket,
            before=before,
            after=after,
            params=params,
            details=outcome.details,
        )
        if action.event is not None:
            # The transactional outbox: the shop hears of the change, or the change never was.
            from console.integrations.outbox import emit_for_action

            emit_for_action(
                s,
                action.event,
                action.event_records(target) if action.event_records else [target],
                actor=user.actor(),
                reason=reason,
                audit_seq=entry.seq,
            )
        s.add(
            IdempotencyRecord(
                key=key,
                action=action.name,
                target_id=target_id,
                actor_sub=user.sub,
                outcome="success",
                message=outcome.message[:1000],
                audit_seq=entry.seq,
            )
        )
        s.commit()
        return RunResult(
            200,
            outcome.message,
            "success",
            entry.seq,
            target,
            outcome.level,
            reveal=outcome.reveal,
            reveal_label=outcome.reveal_label,
        )
    except IntegrityError:
        # The same idempotency key committed between our check and our insert.
        s.rollback()
        previous = _find_idempotent(s, key)
        if previous is not None:
            return _replay(previous, action, target_id, user)
        raise
    except ActionError as exc:
        s.rollback()
        seq = _audit_failure(
            action,
            target_id=target_id,
            user=user,
            reason=reason,
            ticket=ticket,
            params=params,
            error=exc.message,
            exc=exc,
        )
        return RunResult(exc.status, f"Nothing was changed: {exc.message}", "failed", seq)
    except Exception as exc:
        s.rollback()
        log.exception("action %s on %s failed", action.name, target_id)
        seq = _audit_failure(
            action,
            target_id=target_id,
            user=user,
            reason=reason,
            ticket=ticket,
            params=params,
            error=f"{type(exc).__name__}: {exc}",
            exc=exc,
        )
        ref = f" (audit entry #{seq})" if seq else ""
        return RunResult(
            500,
            f"The action failed and nothing was changed{ref}. The error was recorded; "
            "try again or escalate with that reference.",
            "failed",
            seq,
        )


def _audit_failure(
    action: Action[Any],
    *,
    target_id: str,
    user: CurrentUser,
    reason: str,
    ticket: str | None,
    params: dict[str, Any],
    error: str,
    exc: BaseException,
) -> int | None:
    details: dict[str, Any] = {"error": error[:1000]}
    if isinstance(exc, ActionError):
        details.update(exc.details)
    return record_now(
        action=action.name,
        outcome="failed",
        actor=user.actor(),
        target_type=action.target_type,
        target_id=target_id,
        reason=reason,
        ticket=ticket,
        params=params,
        details=details,
    )


def _lock_not_available(exc: OperationalError) -> bool:
    """PostgreSQL's 55P03 (lock_not_available), from FOR UPDATE NOWAIT."""
    return getattr(exc.orig, "sqlstate", None) == "55P03"


def _find_idempotent(s: Session, key: str) -> IdempotencyRecord | None:
    return s.execute(
        select(IdempotencyRecord).where(IdempotencyRecord.key == key)
    ).scalar_one_or_none()


def _replay(
    previous: IdempotencyRecord, action: Action[Any], target_id: str, user: CurrentUser
) -> RunResult:
    if (
        previous.action != action.name
        or previous.target_id != target_id
        or previous.actor_sub != user.sub
    ):
        return RunResult(
            409,
            "This form was already used for a different action. Reload the page and try again.",
            "failed",
        )
    return RunResult(
        200,
        f"Already done: {previous.message} (this was a repeated submit; nothing ran twice).",
        "replayed",
        previous.audit_seq,
    )
