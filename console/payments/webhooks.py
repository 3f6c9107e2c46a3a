"""Stripe webhook intake: verify, store verbatim, process once.

`POST /webhooks/stripe` has no session and no CSRF token: Stripe's signature
on the raw body is the only credential. Every verified event is stored before
it is processed; the event id is unique, so a re-delivery is acknowledged and
not processed again (runbook 003: "Event Already Processed" is normal).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, jsonify, request
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from console import db
from console.cardnumbers import mask_in, mask_pans
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
    """Stripe's endpoint: signature only.

    Unsigned (or badly signed): 400, recorded as a rejection. Signed but
    impossible to process (too deep, oversized, NUL, numbers out of range,
    not an event): stored as a failed event with the reason and answered
    200, so Stripe stops redelivering something no retry can fix.
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
    masked, changed = mask_in(event)
    stored = store_event(s, masked, json.dumps(masked, ensure_ascii=False) if changed else text)
    if stored is None:
        WEBHOOK_EVENTS.labels("duplicate").inc()
        known = s.scalar(
            select(WebhookEvent.processed_at).where(WebhookEvent.event_id == event["id"])
        )
        s.rollback()
        if known is not None:
            return jsonify(status="duplicate", id=event["id"]), 200
        # Stored but never processed (the first delivery failed, or its process died
        # between storing and processing): Stripe's redelivery is the retry.
    else:
        WEBHOOK_EVENTS.labels("received").inc()
    result = process_event(s, event["id"])
    if result.status == WebhookStatus.FAILED and result.retryable:
        return jsonify(status="failed", id=event["id"], error=result.error), 503
    return jsonify(status=result.status.value, id=event["id"]), 200


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


def store_event(s: Session, event: dict[str, Any], raw_body: str) -> WebhookEvent | None:
    """Insert the event verbatim; None (and a counted delivery) when it is known."""
    obj = event["data"]["object"]
    created = event.get("created")
    row = WebhookEvent(
        event_id=event["id"],
        type=event["type"],
        api_version=(event.get("api_version") or None),
        livemode=bool(event.get("livemode")),
        object_id=obj.get("id") if isinstance(obj.get("id"), str) else None,
        raw_body=raw_body,
        status=WebhookStatus.RECEIVED,
        stripe_created_at=datetime.fromtimestamp(created, UTC)
        if isinstance(created, int)
        else None,
    )
    s.add(row)
    try:
        s.commit()
    except IntegrityError:
        s.rollback()
        s.execute(
            update(WebhookEvent)
            .where(WebhookEvent.event_id == event["id"])
            .values(deliveries=WebhookEvent.deliveries + 1)
        )
        s.commit()
        return None
    return row


class ProcessResult:
    def __init__(self, status: WebhookStatus, error: str | None = None, retryable: bool = False):
        self.status = status
        self.error = error
        self.retryable = retryable


def apply_event(s: Session, event_row: WebhookEvent, *, flush: bool = True) -> WebhookStatus:
    """Run the event's handler in the caller's transaction and mark it done.

    Raises what the handler raises; the caller rolls back and records the
    failure. Nothing is committed here.
    """
    handler = HANDLERS.get(event_row.type)
    if handler is None:
        event_row.status = WebhookStatus.IGNORED
    else:
        handler(s, json.loads(event_row.raw_body))
        event_row.status = WebhookStatus.PROCESSED
    event_row.processed_at = utcnow()
    event_row.attempts += 1
    event_row.last_error = None
    if flush:
        s.flush()
    return event_row.status


def is_retryable(exc: BaseException) -> bool:
    """Whether Stripe redelivering (or a person retrying) can help.

    A lost connection or a lock timeout can pass; data the database refuses
    (too long, out of range, a constraint) never will, so it is not retryable
    and the event is not answered 503 for the days Stripe keeps trying.
    """
    if isinstance(exc, GatewayError):
        return exc.retryable
    return isinstance(exc, OperationalError | InterfaceError)


def process_event(s: Session, event_id: str) -> ProcessResult:
    """Process a stored event once: the order change and the status commit together."""
    event_row = s.scalar(
        select(WebhookEvent).where(WebhookEvent.event_id == event_id).with_for_update()
    )
    if event_row is None:
        s.rollback()
        return ProcessResult(WebhookStatus.FAILED, "unknown event")
    if event_row.processed_at is not None:
        status = event_row.status
        s.rollback()
        return ProcessResult(status)
    try:
        status = apply_event(s, event_row)
    except (GatewayError, OperationalError, DBAPIError, Unprocessable) as exc:
        s.rollback()
        return mark_failed(s, event_id, str(exc), retryable=is_retryable(exc))
    except Exception as exc:
        log.exception("webhook handler for %s failed", event_id)
        s.rollback()
        return mark_failed(s, event_id, f"{type(exc).__name__}: {exc}", retryable=False)
    s.commit()
    if status == WebhookStatus.PROCESSED:
        WEBHOOK_EVENTS.labels("processed").inc()
    return ProcessResult(status)


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
