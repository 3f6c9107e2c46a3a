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

import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, TypeVar

from flask_wtf import FlaskForm
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session
from wtforms import HiddenField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, Regexp, ValidationError

from console.actions.models import IdempotencyRecord
from console.audit.chain import canonical_json
from console.audit.service import record, record_now
from console.cardnumbers import contains_pan
from console.currency import AmountError, exponent, parse_amount
from console.db import utcnow
from console.security.permissions import Permission
from console.security.users import CurrentUser

log = logging.getLogger(__name__)

T = TypeVar("T")

# C0 controls except tab, LF and CR; DEL and the C1 controls (0x9b is an escape introducer).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
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
    seen = HiddenField()
    """The numbers the confirm step showed (`Action.seen`), to refuse a stale confirmation."""

    currency: str | None = None
    """The target's currency, set by the framework before rendering and validating."""

    def validate(self, extra_validators: Mapping[str, Any] | None = None) -> bool:
        """The declared validators, then the rules for every free-text field of every form.

        Refused before anything is stored: a card number (it would be hashed
        into the append-only audit chain for good) and control characters
        (NUL cannot be stored; the others would reach CSV cells and terminals).
        """
        ok = bool(super().validate(extra_validators))
        for f in self:
            if f.type == "CSRFTokenField":
                continue
            # Hidden fields (idempotency key, return path) are never stored as text;
            # a random key made of digit groups must not look like a card.
            problem = free_text_problem(f.raw_data or [], pan=f.type != "HiddenField")
            if problem:
                f.errors = [*f.errors, problem]
                ok = False
        return ok


def free_text_problem(values: list[Any], *, pan: bool = True) -> str | None:
    """Why submitted text cannot be stored as given, or None."""
    for value in values:
        if not isinstance(value, str):
            continue
        if _CONTROL.search(value):
            return "Remove the control characters (such as NUL or escape codes) from this field."
        if pan and contains_pan(value):
            return (
                "This looks like a card number (13-19 digits passing the Luhn check). Card "
                "numbers must never be stored here: remove it; the last four digits are enough."
            )
    return None


class MoneyField(StringField):
    """An amount typed in major units of the form's currency; `.minor` holds minor units.

    Parsed with the currency's exponent (JPY none, EUR two, KWD three), never
    rounded: more decimals than the currency has, a non-finite or negative
    value is a field error. The framework sets `form.currency` from the
    declaration's `currency` before validating.
    """

    minor: int | None = None

    def pre_validate(self, form: Any) -> None:
        self.minor = None
        if not (self.data or "").strip():
            return  # InputRequired / Optional decide
        try:
            self.minor = parse_amount(self.data, getattr(form, "currency", None))
        except AmountError as exc:
            raise ValidationError(str(exc)) from None

    def help_text(self, form: Any) -> str:
        currency = getattr(form, "currency", None) or ""
        places = exponent(currency)
        example = {0: "1200", 2: "12.50", 3: "1.250"}[places]
        decimals = "no decimals" if places == 0 else f"{places} decimals"
        return f"In {currency.upper() or 'major units'} ({decimals}), e.g. {example}."


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
    seen: Callable[[T], dict[str, Any]] | None = None
    """The numbers the person confirms (counts, totals). The confirm step carries
    them; if the locked target's differ, the action is refused with a 409 and
    nothing is written (the page was out of date)."""
    currency: Callable[[T], str] | None = None
    """The currency the form's money fields are typed in (sets `form.currency`)."""
    event: str | Callable[[Any], str | None] | None = None
    """The outbox event a success writes about each changed shop record, e.g.
    `"order.refunded"` (console/integrations/outbox.py EVENT_TYPES), or a function of
    the record giving the type or None (no event)."""
    event_records: Callable[[T], list[Any]] | None = None
    """The shop records the event is about, when the target is not one (default: [target])."""
    changes: Callable[[T], list[Any]] | None = None
    """Other records the effect changes (default: `event_records`): each one's before and
    after go into the audit entry (`details.records`), so the action shows in that
    record's own history too (an order fixed through a finding or an event replay).
    Their models are registered with `audited_record`."""

    def available(self, target: T) -> bool:
        return self.precondition(target) is None


def loader(
    model: type[T], column: Any, *options: Any, nowait: bool = True
) -> Callable[[Session, str, bool], T | None]:
    """A target loader by a unique column; locking takes the row FOR UPDATE NOWAIT.

    NOWAIT: a second person acting on the same row gets a 409 at once (see
    `run_action`) instead of queueing behind the first with a connection held.
    Machines (the ingest API) wait their turn instead: `nowait=False`.
    """

    def load(s: Session, key: str, lock: bool) -> T | None:
        stmt = select(model).where(column == key)
        if options:
            stmt = stmt.options(*options)
        if lock:
            stmt = stmt.with_for_update(of=model, nowait=nowait)
        return s.scalar(stmt)

    return load


REGISTRY: dict[str, Action[Any]] = {}


@dataclass(frozen=True)
class RecordKind:
    target_type: str
    key: Callable[[Any], str]
    snapshot: Callable[[Any], dict[str, Any]]


RECORD_KINDS: dict[type, RecordKind] = {}


def audited_record(
    model: type[T],
    target_type: str,
    key: Callable[[T], str],
    snapshot: Callable[[T], dict[str, Any]],
) -> None:
    """How a record another action changes is named and snapshotted in its audit entry."""
    RECORD_KINDS[model] = RecordKind(target_type, key, snapshot)


def _changed_records(action: Action[Any], target: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """{(type, id): snapshot} of the other records the action changes (see `Action.changes`)."""
    pick = action.changes or action.event_records
    if pick is None:
        return {}
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for rec in pick(target):
        kind = RECORD_KINDS.get(type(rec))
        if kind is None or rec is target:
            continue
        found[(kind.target_type, kind.key(rec))] = kind.snapshot(rec)
    return found


def _event_records(
    action: Action[Any],
    target: Any,
    before: dict[tuple[str, str], dict[str, Any]],
    after: dict[tuple[str, str], dict[str, Any]],
) -> list[Any]:
    """The records an action's event is about, less other records it left as they were.

    An action whose effect depends on what it finds (a webhook replay confirms an
    order, or only records a failed payment) tells the shop of the records it changed,
    not of every record it looked at.
    """
    records = action.event_records(target) if action.event_records else [target]
    unchanged = {key for key, snapshot in after.items() if before.get(key) == snapshot}
    out = []
    for rec in records:
        kind = RECORD_KINDS.get(type(rec))
        if rec is not target and kind and (kind.target_type, kind.key(rec)) in unchanged:
            continue
        out.append(rec)
    return out


def _records_detail(
    before: dict[tuple[str, str], dict[str, Any]], after: dict[tuple[str, str], dict[str, Any]]
) -> list[dict[str, Any]]:
    return [
        {"type": t, "id": i, "before": before.get((t, i)), "after": after.get((t, i))}
        for t, i in sorted({*before, *after})
    ]


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


def seen_token(values: Mapping[str, Any]) -> str:
    """The canonical form of the numbers a confirm step showed."""
    return json.dumps(dict(values), sort_keys=True, separators=(",", ":"), default=str)


def _seen_changes(posted: str, now: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """What the form showed (if readable) and the changes, in words."""
    try:
        shown = json.loads(posted) if posted else None
    except ValueError:
        shown = None
    if not isinstance(shown, dict):
        return None, "the form did not say which numbers it showed; reopen it"
    current = json.loads(seen_token(now))
    changes = [
        f"{k.replace('_', ' ')} {shown.get(k)} → {current.get(k)}"
        for k in sorted(set(shown) | set(current))
        if shown.get(k) != current.get(k)
    ]
    return shown, ", ".join(changes)


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


def audit_refused_form(
    action: Action[Any], user: CurrentUser, target_id: str, form: ActionForm, error: str
) -> int | None:
    """Record a submit refused before it ran (invalid fields, missing ticket), as typed.

    The reason and ticket are recorded as submitted; what cannot be stored as
    given (a NUL byte, an over-long value) is made storable by the audit log,
    which says so in the entry.
    """
    raw_reason = form.reason.raw_data[0] if form.reason.raw_data else None
    raw_ticket = form.ticket.raw_data[0] if form.ticket.raw_data else None
    fields = {name: list(errors) for name, errors in form.errors.items() if errors}
    return record_now(
        action=action.name,
        outcome="failed",
        actor=user.actor(),
        target_type=action.target_type,
        target_id=target_id,
        reason=raw_reason,
        ticket=raw_ticket,
        details={"error": error, "http_status": 422, "fields": fields},
    )


def run_action(
    s: Session, action: Action[T], target_id: str, form: ActionForm, user: CurrentUser
) -> RunResult:
    """Run a declared action for a validated form; the only commit point.

    Every way out that is not a success leaves an audit entry: a refusal, a
    row another person holds (409), a stale page, a failed effect, and a crash
    anywhere here, including the ones no `except Exception` sees (a worker
    killed by its timeout raises SystemExit in the middle of a Stripe call).
    """
    reason = (form.reason.data or "").strip()
    ticket = (form.ticket.data or "").strip() or None
    key = form.idempotency_key.data or ""
    params: dict[str, Any] = {}

    def failed(status: int, message: str, outcome: str, error: str, **details: Any) -> RunResult:
        seq = _audit_failure(
            action,
            target_id=target_id,
            user=user,
            reason=reason,
            ticket=ticket,
            params=params,
            error=error,
            extra={"http_status": status, **details},
        )
        return RunResult(status, message, outcome, seq)

    fingerprint = ""

    try:
        params = action.params(form)
        fingerprint = repeat_fingerprint(action.name, target_id, params, reason, ticket)
        previous = _find_idempotent(s, key, user.sub, fingerprint)
        if previous is not None:
            s.rollback()
            return _replay(previous, action, target_id, user, key=key, failed=failed)
        try:
            target = action.load(s, target_id, True)
        except OperationalError as exc:
            if not _lock_not_available(exc):
                raise
            # Someone else is acting on this row right now: answer at once
            # instead of queueing behind them (and holding a connection).
            s.rollback()
            return failed(
                409,
                f"Someone else is acting on this {action.target_type} right now. Nothing was "
                "changed; reload the page in a moment to see the result.",
                "stale",
                "another action holds this row (lock not available)",
            )
        if target is None:
            s.rollback()
            return failed(
                404, f"No {action.target_type} {target_id} was found.", "failed", "no such target"
            )
        # After the lock: a concurrent submit with the same key may have committed.
        previous = _find_idempotent(s, key, user.sub, fingerprint)
        if previous is not None:
            s.rollback()
            return _replay(previous, action, target_id, user, key=key, failed=failed)
        stale = action.precondition(target)
        if stale is not None:
            s.rollback()
            return failed(
                409,
                f"Nothing was changed: {stale} The page you acted on was out of date; "
                "it has been refreshed.",
                "stale",
                "precondition no longer holds",
                why=stale,
            )
        if action.seen is not None:
            current = action.seen(target)
            posted = form.seen.data or ""
            if posted != seen_token(current):
                shown, changes = _seen_changes(posted, current)
                s.rollback()
                return failed(
                    409,
                    f"Nothing was changed: the numbers changed since you opened this ({changes}). "
                    "Review the new numbers and confirm again.",
                    "stale",
                    "changed since the confirm step was rendered",
                    shown=shown,
                    now=json.loads(seen_token(current)),
                )
        before = action.snapshot(target)
        others_before = _changed_records(action, target)
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
        details = dict(outcome.details)
        others_after = _changed_records(action, target)
        records = _records_detail(others_before, others_after)
        if records:
            details["records"] = records
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
            details=details,
        )
        if action.event is not None:
            # The transactional outbox: the shop hears of the change, or the change never was.
            from console.integrations.outbox import emit_for_action

            emit_for_action(
                s,
                action.event,
                _event_records(action, target, others_before, others_after),
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
                fingerprint=fingerprint,
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
    except IntegrityError as exc:
        # The same idempotency key committed between our check and our insert.
        s.rollback()
        previous = _find_idempotent(s, key, user.sub, fingerprint)
        if previous is not None:
            return _replay(previous, action, target_id, user, key=key, failed=failed)
        return _crashed(
            s,
            action,
            target_id=target_id,
            user=user,
            reason=reason,
            ticket=ticket,
            params=params,
            exc=exc,
        )
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
        return _crashed(
            s,
            action,
            target_id=target_id,
            user=user,
            reason=reason,
            ticket=ticket,
            params=params,
            exc=exc,
        )
    except BaseException as exc:
        # SystemExit (a worker timeout), KeyboardInterrupt: record, then let it end the worker.
        try:
            s.rollback()
        finally:
            _audit_failure(
                action,
                target_id=target_id,
                user=user,
                reason=reason,
                ticket=ticket,
                params=params,
                error=f"interrupted: {type(exc).__name__}: {exc}",
                exc=exc,
            )
        raise


def _crashed(
    s: Session,
    action: Action[Any],
    *,
    target_id: str,
    user: CurrentUser,
    reason: str,
    ticket: str | None,
    params: dict[str, Any],
    exc: Exception,
) -> RunResult:
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
    exc: BaseException | None = None,
    extra: Mapping[str, Any] | None = None,
) -> int | None:
    """The `failed` entry of an attempt that changed nothing (its own transaction)."""
    details: dict[str, Any] = {"error": error[:1000], **(extra or {})}
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


REPEAT_WINDOW = timedelta(minutes=2)


def repeat_fingerprint(
    action: str, target_id: str, params: Mapping[str, Any], reason: str, ticket: str | None
) -> str:
    """What makes two submits "the same": who acts is compared separately."""
    body = canonical_json(
        {
            "action": action,
            "target": target_id,
            "params": dict(params),
            "reason": reason,
            "ticket": ticket,
        }
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _find_idempotent(
    s: Session, key: str, actor_sub: str, fingerprint: str
) -> IdempotencyRecord | None:
    """The first result of this form (its key), or of the same submit a moment ago.

    Without JavaScript, Back after a success shows the form again with a new
    key; the fingerprint recognises that second submit as a repeat.
    """
    same_key = s.execute(
        select(IdempotencyRecord).where(IdempotencyRecord.key == key)
    ).scalar_one_or_none()
    if same_key is not None:
        return same_key
    return s.scalars(
        select(IdempotencyRecord)
        .where(
            IdempotencyRecord.actor_sub == actor_sub,
            IdempotencyRecord.fingerprint == fingerprint,
            IdempotencyRecord.created_at > utcnow() - REPEAT_WINDOW,
            IdempotencyRecord.outcome == "success",
        )
        .order_by(IdempotencyRecord.created_at.desc())
        .limit(1)
    ).first()


def _replay(
    previous: IdempotencyRecord,
    action: Action[Any],
    target_id: str,
    user: CurrentUser,
    *,
    key: str,
    failed: Callable[..., RunResult],
) -> RunResult:
    if (
        previous.action != action.name
        or previous.target_id != target_id
        or previous.actor_sub != user.sub
    ):
        return failed(
            409,
            "This form was already used for a different action. Reload the page and try again.",
            "failed",
            "idempotency key already used for another action, target or person",
        )
    if previous.key != key:
        return RunResult(
            200,
            f"Already done a moment ago: {previous.message} (the same action with the same "
            "reason was submitted again; nothing ran twice. To do it again on purpose, "
            "write a different reason.)",
            "replayed",
            previous.audit_seq,
        )
    return RunResult(
        200,
        f"Already done: {previous.message} (this was a repeated submit; nothing ran twice).",
        "replayed",
        previous.audit_seq,
    )
