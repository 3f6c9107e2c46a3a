"""Stripe webhook intake: verify, store verbatim and answer; a worker processes once.

`POST /webhooks/stripe` has no session and no CSRF token: Stripe's signature
on the raw body is the only credential. Every verified event is stored, and
queued (the row is the queue entry) before the 200 (Stripe's advice:
acknowledge quickly, then do the work); a job worker applies it
(`process_pending`, tasks `webhooks.drain` and `webhooks.process`). The event id is unique, so a
re-delivery is acknowledged and not processed again (runbook 003: "Event
Already Processed" is normal).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from flask import Blueprint, jsonify, request
from sqlalchemy import Engine, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from console import db
from console.cardnumbers import contains_pan, mask_in, mask_pans
from console.db import utcnow
from console.extensions import csrf
from console.ops.metrics import WEBHOOK_EVENTS
from console.payments.gateway import GatewayError, SignatureError, gateway
from console.payments.handlers import HANDLERS, Unprocessable
from console.payments.models import WebhookEvent, WebhookRejection, WebhookStatus

log = logging.getLogger(__name__)

bp = Blueprint("stripe_webhooks", __name__)
MAX_BODY = 1024 * 1024


# Bounds on what a stored event may hold. Stripe's own events stay far inside
# them; anything beyond is an event no handler could apply.
MAX_DEPTH = 32
MAX_STRING = 64 * 1024
MAX_INT = 2**63 - 1
COLUMN_LIMITS = {"id": 255, "type": 128, "api_version": 32}
OBJECT_ID_MAX = 255


class BadEvent(ValueError):
    """A body that can never be processed as it stands; the message says why."""


def _reject(reason: str, body: bytes, status: int, claimed_event_id: str | None = None) -> Any:
    """Answer a delivery we will not process, and keep a record of it."""
    WEBHOOK_EVENTS.labels("error").inc()
    try:
        with db.separate_session() as s:
            s.add(
                WebhookRejection(
                    reason=_printable(reason)[:255],
                    source_ip=request.remote_addr,
                    body_sha256=hashlib.sha256(body).hexdigest(),
                    body_size=len(body),
                    claimed_event_id=_usable_id(claimed_event_id),
                )
            )
            s.commit()
    except Exception:
        log.exception("could not record rejected webhook delivery")
    return jsonify(error=reason), status


def _printable(text: str) -> str:
    """Text a column and a log line can hold: no NUL, no other control characters."""
    return "".join(ch if ch in "\n\t" or ch.isprintable() else "\ufffd" for ch in text)


def _usable_id(value: Any) -> str | None:
    if not isinstance(value, str) or not value or len(value) > COLUMN_LIMITS["id"]:
        return None
    return value if value.isprintable() else None


def _bad_constant(name: str) -> Any:
    raise BadEvent(f"the body holds {name}, which is not a JSON number")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadEvent(f"the number {text[:40]} is out of range")
    return value


def _parse_int(text: str) -> int:
    if len(text) > 20:
        raise BadEvent(f"the number {text[:40]}... is out of range")
    value = int(text)
    if not -MAX_INT - 1 <= value <= MAX_INT:
        raise BadEvent(f"the number {text} is out of range (more than 64 bits)")
    return value


def parse_event(text: str) -> dict[str, Any]:
    """Parse and check a verified body; BadEvent says why it can never be processed."""
    try:
        event = json.loads(
            text,
            parse_constant=_bad_constant,
            parse_float=_parse_float,
            parse_int=_parse_int,
        )
    except RecursionError:
        raise BadEvent(f"the JSON is nested deeper than {MAX_DEPTH} levels") from None
    except BadEvent:
        raise
    except ValueError as exc:
        raise BadEvent(f"body is not JSON ({str(exc)[:120]})") from None
    if not _bounded_by_its_text(text):
        _check_values(event)
    problem = _malformed(event)
    if problem:
        raise BadEvent(problem)
    for key, limit in COLUMN_LIMITS.items():
        value = event.get(key)
        if isinstance(value, str) and len(value) > limit:
            raise BadEvent(f"the event's {key} is longer than {limit} characters")
    object_id = event["data"]["object"].get("id")
    if isinstance(object_id, str) and len(object_id) > OBJECT_ID_MAX:
        raise BadEvent(f"data.object.id is longer than {OBJECT_ID_MAX} characters")
    created = event.get("created")
    if created is not None and (
        not isinstance(created, int) or isinstance(created, bool) or not 0 <= created < 2**33
    ):
        raise BadEvent("the event's created time is not a Unix time in range")
    return dict(event)


def _bounded_by_its_text(text: str) -> bool:
    """Whether the raw text alone proves depth, string sizes and NUL are within bounds.

    No value can nest deeper than the text has brackets, no string is longer
    than the text, and a NUL inside a JSON string can only be written
    `\\u0000` (json.loads refuses a raw control character). Stripe's events
    pass all three, so the walk below runs only for the bodies that may not
    (it cost 0.9 ms of each intake's 3 ms, bench/profile_intake.py).
    """
    return (
        len(text) <= MAX_STRING
        and "\\u0000" not in text
        and text.count("{") + text.count("[") <= MAX_DEPTH
    )


def _check_values(root: Any) -> None:
    """Depth, string sizes and NUL characters, without recursion."""
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise BadEvent(f"the JSON is nested deeper than {MAX_DEPTH} levels")
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_string(key, "a key")
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            _check_string(value, "a value")


def _check_string(value: str, what: str) -> None:
    if len(value) > MAX_STRING:
        raise BadEvent(f"{what} is longer than {MAX_STRING} characters")
    if "\x00" in value:
        raise BadEvent(f"{what} holds a NUL character")


def _claimed_id(body: bytes) -> str | None:
    """The id a body says it has, read cheaply and safely (for the rejection record)."""
    try:
        value = json.loads(body, parse_constant=_bad_constant, parse_int=_parse_int).get("id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return value if isinstance(value, str) else None


@bp.post("/webhooks/stripe")
@csrf.exempt
def receive() -> Any:
    """Stripe's endpoint: signature only; store and answer, the job engine processes.

    Unsigned (or badly signed): 400, recorded as a rejection. Signed but
    impossible to process (too deep, oversized, NUL, numbers out of range,
    not an event): stored as a failed event with the reason and answered
    200, so Stripe stops redelivering something no retry can fix. Anything
    else is stored and queued in one transaction and answered 200
    (`received`); a worker applies it (`process_pending`).
    """
    length = request.content_length
    if length is not None and length > MAX_BODY:
        return _reject("body larger than 1 MB", b"", 413)
    body = request.get_data(cache=False)
    if len(body) > MAX_BODY:
        return _reject("body larger than 1 MB", body[:0], 413)
    if request.mimetype != "application/json":
        return _reject(f"content type {request.mimetype or 'missing'} is not JSON", body, 415)
    try:
        text = gateway().verify_signature(body, request.headers.get("Stripe-Signature"))
    except SignatureError as exc:
        log.warning("Stripe signature verification failed: %s", exc)
        return _reject(
            "signature verification failed: " + str(exc)[:180], body, 400, _claimed_id(body)
        )
    s = db.session()
    try:
        event = parse_event(text)
    except BadEvent as exc:
        return _store_unprocessable(s, text, str(exc))
    stored = store_event(s, *masked_for_storing(text, event))
    return jsonify(status=stored.status.value, id=stored.event_id), 200


_PAN_ESCAPE = re.compile(r"\\u00(?:3[0-9]|20|2[dD])")


def masked_for_storing(text: str, event: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The event with card numbers masked, and the body to store (verbatim when none was).

    Walking every value costs more than the rest of intake together, so the
    raw text is checked first: unless a `\\u` escape writes a digit, a space
    or a hyphen (what a card number is made of), the digits of every string,
    key and integer appear in it verbatim, and a text with no card-number
    candidate has none in any of them. Such an escape or a candidate: the
    full walk.
    """
    if not _PAN_ESCAPE.search(text) and not contains_pan(text):
        return event, text
    masked, changed = mask_in(event)
    return masked, json.dumps(masked, ensure_ascii=False) if changed else text


def _store_unprocessable(s: Session, text: str, reason: str) -> Any:
    """Keep a signed event that can never be processed as `failed`, with why; answer 200."""
    claimed: dict[str, Any] = {}
    try:
        loose = json.loads(text, parse_constant=lambda _name: None)
        if isinstance(loose, dict):
            claimed = loose
    except (ValueError, RecursionError):
        pass
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    event_id = _usable_id(claimed.get("id")) or f"unprocessable_{digest[:40]}"
    event_type = claimed.get("type")
    if not isinstance(event_type, str) or not event_type.isprintable() or len(event_type) > 128:
        event_type = "unprocessable"
    # Stored text never holds a NUL (PostgreSQL cannot) nor a card number.
    raw = mask_pans(text.replace("\x00", "\\u0000"))
    row = WebhookEvent(
        event_id=event_id,
        type=event_type,
        raw_body=raw,
        status=WebhookStatus.FAILED,
        attempts=1,
        last_error=f"unprocessable: {_printable(reason)}"[:2000],
    )
    s.add(row)
    try:
        s.commit()
    except IntegrityError:
        s.rollback()
        s.execute(
            update(WebhookEvent)
            .where(WebhookEvent.event_id == event_id)
            .values(deliveries=WebhookEvent.deliveries + 1)
        )
        s.commit()
        return jsonify(status="duplicate", id=event_id), 200
    WEBHOOK_EVENTS.labels("error").inc()
    log.warning("stored unprocessable webhook %s: %s", event_id, reason)
    return jsonify(status="failed", id=event_id, error=reason), 200


def _malformed(event: Any) -> str | None:
    if not isinstance(event, dict):
        return "event is not a JSON object"
    if not isinstance(event.get("id"), str) or not event["id"]:
        return "event has no id"
    if not isinstance(event.get("type"), str) or not event["type"]:
        return "event has no type"
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        return "event has no data.object"
    return None


@dataclass(frozen=True)
class Stored:
    """What intake did with a delivery: its row, and what the answer says."""

    row_id: int
    event_id: str
    status: WebhookStatus


_INSERT_COLUMNS = (
    "INSERT INTO webhook_events (event_id, type, api_version, livemode, object_id, raw_body, "
    "status, attempts, deliveries, stripe_created_at, received_at) "
)
_INSERT_EVENT = text(
    _INSERT_COLUMNS
    + "VALUES (:event_id, :type, :api_version, :livemode, :object_id, :raw_body, 'received', "
    "0, 1, :stripe_created_at, :received_at) ON CONFLICT (event_id) DO NOTHING RETURNING id"
)
# The same statement for psycopg itself (the intake fast path, `store_new_event`).
_INSERT_EVENT_DBAPI = (
    _INSERT_COLUMNS
    + "VALUES (%(event_id)s, %(type)s, %(api_version)s, %(livemode)s, %(object_id)s, "
    "%(raw_body)s, 'received', 0, 1, %(stripe_created_at)s, %(received_at)s) "
    "ON CONFLICT (event_id) DO NOTHING RETURNING id"
)


def _event_row(event: dict[str, Any], raw_body: str) -> dict[str, Any]:
    obj = event["data"]["object"]
    created = event.get("created")
    return {
        "event_id": event["id"],
        "type": event["type"],
        "api_version": event.get("api_version") or None,
        "livemode": bool(event.get("livemode")),
        "object_id": obj.get("id") if isinstance(obj.get("id"), str) else None,
        "raw_body": raw_body,
        "stripe_created_at": datetime.fromtimestamp(created, UTC)
        if isinstance(created, int)
        else None,
        "received_at": utcnow(),
    }


def store_event(s: Session, event: dict[str, Any], raw_body: str) -> Stored:
    """Store the event as `received` (queued) and commit; a worker applies it.

    Why this shape (issue 15; Stripe's advice: answer quickly, then do the
    work): intake is one `INSERT ... ON CONFLICT (event_id) DO NOTHING` and
    one commit, so the answer never waits for a handler's row locks or a
    Stripe call, and concurrent deliveries share PostgreSQL's group commit.
    The stored row *is* the queue entry (the partial index
    `ix_webhook_events_queued` holds the waiting ones); the `webhooks.drain`
    task, deferred every second by the job engine's schedule, claims them in
    batches with `FOR UPDATE SKIP LOCKED` (`process_pending`). Deliberately no
    job per event: every job insert NOTIFYs its listeners, and PostgreSQL
    serialises the commits of notifying transactions on one lock, WAL flush
    included, which capped intake at ~35 events/s here (bench/webhooks.py).
    Exactly once is the worker's: an event is applied only under its row
    lock, only while `processed_at` is empty, in the transaction of the
    handler's change.

    A second delivery of a known event id is counted (`deliveries`) and
    acknowledged; if that event's processing failed and it is still
    unprocessed, the redelivery queues another attempt (as a redelivery
    retried processing before).
    """
    # Plain SQL: an ORM insert with this many values is compiled afresh on every
    # call (7 ms of CPU per event, measured with bench/profile_intake.py).
    row_id = s.execute(_INSERT_EVENT, _event_row(event, raw_body)).scalar()
    if row_id is not None:
        s.commit()
        WEBHOOK_EVENTS.labels("received").inc()
        return Stored(row_id, event["id"], WebhookStatus.RECEIVED)
    known = s.execute(
        update(WebhookEvent)
        .where(WebhookEvent.event_id == event["id"])
        .values(deliveries=WebhookEvent.deliveries + 1)
        .returning(WebhookEvent.id, WebhookEvent.processed_at, WebhookEvent.status)
    ).one()
    if known.processed_at is None and known.status == WebhookStatus.FAILED:
        queue_processing(s, known.id)
    s.commit()
    WEBHOOK_EVENTS.labels("duplicate").inc()
    return Stored(known.id, event["id"], WebhookStatus.DUPLICATE)


def store_new_event(engine: Engine, event: dict[str, Any], raw_body: str) -> Stored | None:
    """`store_event` for the common case in one network flight; None if the id is known.

    The intake fast path (issue 15, goal 3): a pooled connection in
    autocommit sends the one `INSERT ... ON CONFLICT DO NOTHING RETURNING
    id`, and PostgreSQL commits it as it answers: one round trip instead of
    BEGIN, INSERT, COMMIT through the ORM session (two more round trips and
    most of the remaining CPU, bench/profile_intake.py). A known event id
    inserts nothing and returns None: the caller then takes `store_event`,
    which counts the redelivery and may queue a retry. Errors propagate and
    the connection is discarded, never returned half-used to the pool.
    """
    proxied = engine.raw_connection()
    try:
        conn: psycopg.Connection[Any] = proxied.driver_connection  # type: ignore[assignment]
        conn.autocommit = True
        try:
            row = conn.execute(_INSERT_EVENT_DBAPI, _event_row(event, raw_body)).fetchone()
        finally:
            conn.autocommit = False
    except BaseException:
        proxied.invalidate()
        raise
    finally:
        proxied.close()
    if row is None:
        return None
    WEBHOOK_EVENTS.labels("received").inc()
    return Stored(row[0], event["id"], WebhookStatus.RECEIVED)


def queue_processing(s: Session, row_id: int, *, at: datetime | None = None) -> None:
    """Queue `webhooks.process` for one stored event (a retry), in the caller's transaction."""
    from console.jobs.engine import enqueue
    from console.jobs.tasks import PROCESS_WEBHOOKS

    enqueue(s, PROCESS_WEBHOOKS, queue="webhooks", scheduled_at=at, event_row_id=row_id)


class ProcessResult:
    def __init__(self, status: WebhookStatus, error: str | None = None, retryable: bool = False):
        self.status = status
        self.error = error
        self.retryable = retryable


def apply_event(
    s: Session,
    event_row: WebhookEvent,
    *,
    flush: bool = True,
    body: dict[str, Any] | None = None,
) -> WebhookStatus:
    """Run the event's handler in the caller's transaction and mark it done.

    `body`: the stored body, if the caller has parsed it already. Raises what the
    handler raises; the caller rolls back and records the failure. Nothing is
    committed here.
    """
    handler = HANDLERS.get(event_row.type)
    if handler is None:
        event_row.status = WebhookStatus.IGNORED
    else:
        handler(s, body if body is not None else json.loads(event_row.raw_body))
        event_row.status = WebhookStatus.PROCESSED
    event_row.processed_at = utcnow()
    event_row.attempts += 1
    event_row.last_error = None
    if flush:
        s.flush()
    return event_row.status


def apply_event_changes(s: Session, event_row: WebhookEvent) -> tuple[WebhookStatus, list[Any]]:
    """`apply_event`, and the records it changed of those the event is about (the shop's
    orders it confirmed or refunded): the caller tells the shop of them (the outbox).

    The records are found and snapshotted before the handler runs; the handler's own
    `FOR UPDATE` reloads them under its lock (`console.db`: locked reads are fresh), so
    the snapshot never stands in for the locked state. A record changed meanwhile by
    someone else counts as changed: at worst the shop hears of its current state once
    more.
    """
    from console.actions.framework import RECORD_KINDS
    from console.payments.handlers import records_touched

    try:
        parsed = json.loads(event_row.raw_body)
    except ValueError:
        parsed = None
    body = parsed if isinstance(parsed, dict) else None
    found = records_touched(s, body) if body is not None else []
    before: list[tuple[Any, dict[str, Any]]] = []
    for rec in found:
        kind = RECORD_KINDS.get(type(rec))
        if kind is not None:
            before.append((rec, kind.snapshot(rec)))
    # The body parsed once for both (a drain applies a hundred per transaction); one that
    # is not an object is left to apply_event, which fails it as before.
    status = apply_event(s, event_row, body=body)
    changed = [rec for rec, snap in before if RECORD_KINDS[type(rec)].snapshot(rec) != snap]
    return status, changed


STRIPE_ACTOR: dict[str, Any] = {"sub": "system:stripe-webhooks", "email": None, "roles": []}
"""Who changed an order when the job engine applied a Stripe event (the shop's events say)."""


def tell_the_shop(
    s: Session,
    event_row: WebhookEvent,
    records: list[Any],
    *,
    event_type: str,
    actor: Mapping[str, Any],
    audit_seq: int | None,
) -> None:
    """An outbox event per order a Stripe event changed, with the order's new state."""
    from console.actions.framework import RECORD_KINDS
    from console.integrations.outbox import emit

    reason = f"Stripe {event_row.type} {event_row.event_id}"
    for rec in records:
        if RECORD_KINDS[type(rec)].target_type == "order":
            emit(s, event_type, rec, actor=actor, reason=reason, audit_seq=audit_seq)


def is_retryable(exc: BaseException) -> bool:
    """Whether Stripe redelivering (or a person retrying) can help.

    A lost connection or a lock timeout can pass; data the database refuses
    (too long, out of range, a constraint) never will, so it is not retryable
    and the event is not answered 503 for the days Stripe keeps trying.
    """
    if isinstance(exc, GatewayError):
        return exc.retryable
    return isinstance(exc, OperationalError | InterfaceError)


BATCH = 100
"""Events one worker transaction applies at most (one commit per batch)."""
RETRY_LIMIT = 8
"""Processing attempts after which a retryable failure waits for a person (replay)."""


def retry_delay(attempts: int) -> timedelta:
    """Backoff between automatic attempts: 10 s, 20 s, 40 s, ... at most an hour."""
    return timedelta(seconds=min(10 * 2 ** max(attempts - 1, 0), 3600))


def process_pending(s: Session, own: int | None = None, *, batch: int = BATCH) -> dict[str, int]:
    """Apply the queued events a worker can take now; one commit.

    Claims `own` (the event a `webhooks.process` job was queued for,
    whatever its status while unprocessed: a retry of a failed one) and up
    to `batch` events waiting as `received`, oldest first, each `FOR UPDATE
    SKIP LOCKED`: two workers never take the same event, and an event
    another worker holds is that worker's to finish (if it dies, its
    transaction rolls back and the events wait as `received` for the next
    drain). Each event runs in a savepoint: a handler's failure rolls back
    that event's changes only and records it `failed` with the error; a
    retryable one (Stripe or the database briefly unavailable) queues
    another attempt with backoff, up to RETRY_LIMIT. The handlers' changes
    and `processed_at` commit together, so an event is applied exactly once.
    """
    rows: list[WebhookEvent] = []
    if own is not None:
        mine = s.scalar(
            select(WebhookEvent)
            .where(WebhookEvent.id == own, WebhookEvent.processed_at.is_(None))
            .with_for_update(skip_locked=True)
        )
        if mine is not None:
            rows.append(mine)
    rows.extend(
        s.scalars(
            select(WebhookEvent)
            .where(
                WebhookEvent.status == WebhookStatus.RECEIVED,
                WebhookEvent.processed_at.is_(None),
                WebhookEvent.id != (own or 0),
            )
            .order_by(WebhookEvent.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
    )
    counts = {"claimed": len(rows), "processed": 0, "ignored": 0, "failed": 0}
    for row in rows:
        try:
            with s.begin_nested():
                status, changed = apply_event_changes(s, row)
                # The shop hears of what Stripe changed, in the same savepoint: an
                # event applied is an event told, exactly once.
                tell_the_shop(
                    s,
                    row,
                    changed,
                    event_type="order.stripe_event_applied",
                    actor=STRIPE_ACTOR,
                    audit_seq=None,
                )
        except (GatewayError, OperationalError, DBAPIError, Unprocessable) as exc:
            _note_failure(s, row, str(exc), retryable=is_retryable(exc))
            counts["failed"] += 1
            continue
        except Exception as exc:
            log.exception("webhook handler for %s failed", row.event_id)
            _note_failure(s, row, f"{type(exc).__name__}: {exc}", retryable=False)
            counts["failed"] += 1
            continue
        counts["processed" if status == WebhookStatus.PROCESSED else "ignored"] += 1
    s.commit()
    if counts["processed"]:
        WEBHOOK_EVENTS.labels("processed").inc(counts["processed"])
    if counts["failed"]:
        WEBHOOK_EVENTS.labels("error").inc(counts["failed"])
    return counts


def _note_failure(s: Session, row: WebhookEvent, error: str, *, retryable: bool) -> None:
    """Record a failed attempt on a claimed row (still locked); maybe queue the next."""
    attempts = s.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id == row.id)
        .values(
            status=WebhookStatus.FAILED,
            attempts=WebhookEvent.attempts + 1,
            last_error=_printable(error)[:2000],
        )
        .returning(WebhookEvent.attempts)
    ).scalar_one()
    if retryable and attempts < RETRY_LIMIT:
        queue_processing(s, row.id, at=utcnow() + retry_delay(attempts))
    log.warning("webhook %s failed (attempt %s): %s", row.event_id, attempts, error[:300])


def mark_failed(s: Session, event_id: str, error: str, *, retryable: bool) -> ProcessResult:
    """Record a failed processing attempt (its own commit)."""
    s.execute(
        update(WebhookEvent)
        .where(WebhookEvent.event_id == event_id, WebhookEvent.processed_at.is_(None))
        .values(
            status=WebhookStatus.FAILED,
            attempts=WebhookEvent.attempts + 1,
            last_error=_printable(error)[:2000],
        )
    )
    s.commit()
    WEBHOOK_EVENTS.labels("error").inc()
    return ProcessResult(WebhookStatus.FAILED, error, retryable)
