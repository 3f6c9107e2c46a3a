"""The common Stripe delivery, answered without Flask's request machinery.

Profiled under load (issue 15, bench/profile_intake.py), an intake spent
most of its CPU in what every Flask request pays: the request context,
before/after hooks, header work, the limiter, the session. A well-formed,
correctly signed delivery needs none of that. This WSGI layer takes exactly
that case: `POST /webhooks/stripe`, no query string, a JSON body with a
length under the limit and a valid signature, that parses within the
bounds; it stores it in one network flight (`store_new_event`: one
autocommit INSERT on a pooled connection, no app context, no ORM session)
and answers with the same JSON, metrics and access-log line. A known event
id (a redelivery) is stored by `store_event` as the view does. Anything else
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
from sqlalchemy import Engine

from console import db
from console.ops.metrics import HTTP_DURATION
from console.payments.gateway import SignatureError, StripeGateway, gateway
from console.payments.webhooks import (
    MAX_BODY,
    BadEvent,
    Stored,
    masked_for_storing,
    parse_event,
    store_event,
    store_new_event,
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
        self._gateway: StripeGateway | None = None

    @property
    def gateway(self) -> StripeGateway:
        if self._gateway is None:
            with self.app.app_context():
                self._gateway = gateway()
        return self._gateway

    def _store(self, event: dict[str, Any], raw_body: str) -> Stored:
        database = db.get_db(self.app)
        # Sessions bound to an engine (every deployment): one flight on a pooled
        # connection. Bound to one connection instead (the test suite's outer
        # transaction), or a redelivery: the session path, inside that binding.
        if isinstance(database.sessionmaker.kw.get("bind"), Engine):
            stored = store_new_event(database.engine, event, raw_body)
            if stored is not None:
                return stored
        with self.app.app_context():
            s = db.session()
            try:
                return store_event(s, event, raw_body)
            except Exception:
                s.rollback()
                raise

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
        try:
            text = self.gateway.verify_signature(body, environ.get("HTTP_STRIPE_SIGNATURE"))
            event = parse_event(text)
        except (SignatureError, BadEvent):
            return self.wrapped(environ, start_response)
        try:
            stored = self._store(*masked_for_storing(text, event))
        except Exception:  # the Flask view answers it (503 if the database is down)
            log.warning("webhook fast path could not store the event; the view takes it")
            return self.wrapped(environ, start_response)
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
