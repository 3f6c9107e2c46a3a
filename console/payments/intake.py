"""The common Stripe delivery, answered without Flask's request machinery.

Profiled under load (issue 15, bench/profile_intake.py), an intake spent
most of its CPU in what every Flask request pays: the request context,
before/after hooks, header work, the limiter, the session. A well-formed,
correctly signed delivery needs none of that. This WSGI layer takes exactly
that case: `POST /webhooks/stripe`, no query string, a JSON body with a
length under the limit and a valid signature, that parses within the
bounds; it stores it with the same `store_event` in an app context and
answers with the same JSON, metrics and access-log line. Anything else
(a bad signature, a hostile or unprocessable body, a missing length) goes
to the Flask view unchanged (`webhooks.receive`), which rejects or stores it
as failed, as before.
"""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from console import db
from console.ops.metrics import HTTP_DURATION
from console.payments.gateway import SignatureError, gateway
from console.payments.webhooks import (
    MAX_BODY,
    BadEvent,
    masked_for_storing,
    parse_event,
    store_event,
)

log = logging.getLogger(__name__)
access = logging.getLogger("console.access")

PATH = "/webhooks/stripe"
ENDPOINT = "stripe_webhooks.receive"
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
HEADERS = [
    ("Content-Type", "application/json"),
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
]


class WebhookIntake:
    """WSGI middleware: the fast path for well-formed signed deliveries, else Flask."""

    def __init__(self, app: Flask, wrapped: WSGIApp) -> None:
        self.app = app
        self.wrapped = wrapped

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.wrapped(environ, start_response)
        started = time.perf_counter()
        length = str(environ.get("CONTENT_LENGTH") or "")
        mimetype = str(environ.get("CONTENT_TYPE") or "").split(";", 1)[0].strip().lower()
        if (
            environ.get("QUERY_STRING")
            or not length.isdigit()
            or int(length) > MAX_BODY
            or mimetype != "application/json"
        ):
            return self.wrapped(environ, start_response)
        body = environ["wsgi.input"].read(int(length))
        environ["wsgi.input"] = io.BytesIO(body)  # the slow path reads it again
        with self.app.app_context():
            try:
                text = gateway().verify_signature(body, environ.get("HTTP_STRIPE_SIGNATURE"))
                event = parse_event(text)
            except (SignatureError, BadEvent):
                return self.wrapped(environ, start_response)
            try:
                stored = store_event(db.session(), *masked_for_storing(text, event))
            except Exception:  # the Flask view answers it (503 if the database is down)
                log.warning("webhook fast path could not store the event; the view takes it")
                db.session().rollback()
                return self.wrapped(environ, start_response)
            finally:
                db.session().close()
        answer = json.dumps({"id": stored.event_id, "status": stored.status.value}).encode()
        request_id = uuid.uuid4().hex
        start_response(
            "200 OK",
            [*HEADERS, ("Content-Length", str(len(answer))), ("X-Request-Id", request_id)],
        )
        elapsed = time.perf_counter() - started
        HTTP_DURATION.labels("POST", ENDPOINT, "200").observe(elapsed)
        access.info(
            "POST %s 200",
            PATH,
            extra={
                "request_id": request_id,
                "method": "POST",
                "route": PATH,
                "path": PATH,
                "status": 200,
                "duration_ms": round(elapsed * 1000, 2),
                "user": None,
            },
        )
        return [answer]
