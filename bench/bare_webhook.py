"""The peer of `bench/webhooks.py`: a WSGI app that only verifies Stripe's signature.

    GUNICORN_BIND=127.0.0.1:8101 GUNICORN_WORKERS=2 STRIPE_WEBHOOK_SECRET=whsec_... \
        .venv/bin/gunicorn -c gunicorn.conf.py bench.bare_webhook:app

Served by the same gunicorn settings as the console, it reads the body,
checks the `Stripe-Signature` header with the `stripe` SDK (the same call the
console's gateway makes, with the same 300 s tolerance) and answers 200 or
400. No Flask, no database: the floor a webhook endpoint on this machine
cannot go below, which the console's intake is measured against.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import stripe

SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "whsec_bench")
TOLERANCE = 300

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Verify the signature on the raw body; 200 `{"status":"ok"}` or 400."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    try:
        stripe.WebhookSignature.verify_header(
            body.decode("utf-8"), environ.get("HTTP_STRIPE_SIGNATURE", ""), SECRET, TOLERANCE
        )
    except (stripe.SignatureVerificationError, UnicodeDecodeError):
        answer, status = b'{"error":"signature verification failed"}', "400 Bad Request"
    else:
        answer, status = b'{"status":"ok"}', "200 OK"
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))]
    )
    return [answer]
