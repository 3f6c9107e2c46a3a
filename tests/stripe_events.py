"""Build Stripe events and sign them the way Stripe does (HMAC-SHA256, `t=...,v1=...`)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from typing import Any

SECRET = "whsec_test_console"
_ids = itertools.count(1)


def sign(payload: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event(event_type: str, obj: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {
        "id": event_id or f"evt_test_{next(_ids):06d}_{int(time.time() * 1000) % 100000}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "livemode": False,
        "type": event_type,
        "data": {"object": obj},
    }


def payment_intent(pi_id: str, amount: int, currency: str = "eur", **extra: Any) -> dict:
    obj = {
        "id": pi_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount,
        "currency": currency,
        "status": "succeeded",
        "metadata": {},
    }
    obj.update(extra)
    return obj


def post(client: Any, evt: dict[str, Any], *, secret: str = SECRET, **headers: str) -> Any:
    body = json.dumps(evt).encode()
    return client.post(
        "/webhooks/stripe",
        data=body,
        headers={
            "Stripe-Signature": sign(body, secret),
            "Content-Type": "application/json",
            **headers,
        },
    )


def process(app: Any) -> dict[str, int]:
    """Run what the `webhooks.process` job runs, here (handler tests on the rolled-back app).

    Intake only stores and queues; tests of what an event does to orders and
    payments apply the queue with the worker's own function. The tests with
    a real worker process (`start_worker`) are in tests/payments/test_webhook_worker.py.
    """
    from console import db
    from console.payments.webhooks import process_pending

    totals: dict[str, int] = {}
    with app.app_context():
        while True:
            counts = process_pending(db.session())
            for key, value in counts.items():
                totals[key] = totals.get(key, 0) + value
            if not counts["claimed"]:
                return totals


def post_processed(client: Any, app: Any, evt: dict[str, Any], **kwargs: Any) -> Any:
    """Deliver an event, then apply the queue as a worker would; the delivery's answer."""
    resp = post(client, evt, **kwargs)
    process(app)
    return resp
