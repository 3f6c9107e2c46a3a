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
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, jsonify, request
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from console import db
from console.app import csrf
from console.db import utcnow
from console.ops.metrics import WEBHOOK_EVENTS
from console.payments.gateway import GatewayError, SignatureError, gateway
from console.payments.handlers import HANDLERS, Unprocessable
from console.payments.models import WebhookEvent, WebhookRejection, WebhookStatus

log = logging.getLogger(__name__)

bp = Blueprint("stripe_webhooks", __name__)
MAX_BODY = 1024 * 1024


def _reject(reason: str, body: bytes, status: int, claimed_event_id: str | None = None) -> Any:
    """Answer a delivery we will not process, and keep a record of it."""
    WEBHOOK_EVENTS.labels("error").inc()
    try:
        with db.separate_session() as s:
            s.add(
                WebhookRejection(
                    reason=reason[:255],
                    source_ip=request.remote_addr,
                    body_sha256=hashlib.sha256(body).hexdigest(),
                    body_size=len(body),
                    claimed_event_id=(claimed_event_id or None) and claimed_event_id[:255],
                )
            )
            s.commit()
    except Exception:
        log.exception("could not record rejected webhook delivery")
    return jsonify(error=reason), status


def _claimed_id(body: bytes) -> str | None:
    try:
        value = json.loads(body).get("id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


@bp.post("/webhooks/stripe")
@csrf.exempt
def receive() -> Any:
    """Stripe's endpoint: signature only."""
    length = request.content_length
    if length is not None and length > MAX_BODY:
        return _reject("body larger than 1 MB", b"", 413)
    body = request.get_data(cache=False)
    if len(body) > MAX_BODY:
        return _reject("body larger than 1 MB", body[:0], 413)
    if request.mimetype != "application/json":
        return _reject(f"content type {request.mimetype or 'missing'} is not JSON", body, 415)
    try:
        event = gateway().verify_webhook(body, request.headers.get("Stripe-Signature"))
    except SignatureError as exc:
        log.warning("Stripe signature verification failed: %s", exc)
        return _reject(
            "signature verification failed: " + str(exc)[:180], body, 400, _claimed_id(body)
        )
    except ValueError:
        return _reject("body is not JSON", body, 400)
    problem = _malformed(event)
    if problem:
        return _reject(problem, body, 400, _claimed_id(body))

    s = db.session()
    stored = store_event(s, event, body.decode("utf-8"))
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
    """Whether Stripe redelivering (or a person retrying) can help."""
    return isinstance(exc, OperationalError | DBAPIError) or (
        isinstance(exc, GatewayError) and exc.retryable
    )


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
            last_error=error[:2000],
        )
    )
    s.commit()
    WEBHOOK_EVENTS.labels("error").inc()
    return ProcessResult(WebhookStatus.FAILED, error, retryable)
