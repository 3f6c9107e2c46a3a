"""The peer of `bench/webhooks.py`: a WSGI app that only verifies Stripe's signature.

    GUNICORN_BIND=127.0.0.1:8101 GUNICORN_WORKERS=2 STRIPE_WEBHOOK_SECRET=whsec_... \
        .venv/bin/gunicorn -c gunicorn.conf.py bench.bare_webhook:app

Served by the same gunicorn settings as the console, it reads the body,
checks the `Stripe-Signature` header with the `stripe` SDK (the same call the
console's gateway makes, with the same 300 s tolerance) and answers 200 or
400. No Flask, no database: the floor a webhook endpoint on this machine
cannot go below, which the console's intake is measured against.

With BARE_STORE_URL set (a libpq URL), the peer also stores each verified
event durably, the least any intake that keeps its promise must do: one
autocommit `INSERT ... ON CONFLICT DO NOTHING` per event, on a connection
per thread, into `bare_events`, a table made `LIKE webhook_events
INCLUDING ALL` (the same columns and the same seven indexes). No bounds
check, no card-number masking, no metrics, no log line: the floor of a
durable intake on this machine.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

import stripe

SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "whsec_bench")
TOLERANCE = 300
STORE_URL = os.environ.get("BARE_STORE_URL")
INSERT = (
    "INSERT INTO bare_events (event_id, type, livemode, object_id, raw_body, status, attempts, "
    "deliveries, received_at) VALUES (%s, %s, %s, %s, %s, 'received', 0, 1, now()) "
    "ON CONFLICT (event_id) DO NOTHING RETURNING id"
)
_local = threading.local()


def _store(text: str) -> None:
    import psycopg

    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = psycopg.connect(STORE_URL, autocommit=True)
    event = json.loads(text)
    obj = event["data"]["object"]
    conn.execute(
        INSERT, (event["id"], event["type"], bool(event.get("livemode")), obj.get("id"), text)
    )


StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Verify the signature on the raw body; 200 `{"status":"ok"}` or 400."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    try:
        text = body.decode("utf-8")
        stripe.WebhookSignature.verify_header(
            text, environ.get("HTTP_STRIPE_SIGNATURE", ""), SECRET, TOLERANCE
        )
        if STORE_URL:
            _store(text)
    except (stripe.SignatureVerificationError, UnicodeDecodeError):
        answer, status = b'{"error":"signature verification failed"}', "400 Bad Request"
    else:
        answer, status = b'{"status":"ok"}', "200 OK"
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))]
    )
    return [answer]
