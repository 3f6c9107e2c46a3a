"""An endpoint outage followed by redelivery processes 100 % of events, once each.

A sender plays Stripe: it delivers signed events to a real gunicorn and keeps
every delivery that got no 2xx for a later retry, as Stripe does (and, as
Stripe may, it also redelivers some that were acknowledged). Midway the
console is SIGKILLed while it is processing an event it has already stored
(its order row is held, so processing waits there), stays down while events
keep coming, and is started again. Figure: after redelivery every event is
processed exactly once (processed, one processing attempt, its effect
applied once), however many deliveries it took.
"""

from __future__ import annotations

import json
import random
import threading

import psycopg
import pytest
import requests

from console import db
from console.orders.models import OrderStatus
from tests import stripe_events as se
from tests.conftest import libpq
from tests.factories import make_order
from tests.reliability.conftest import RUNS, wait_for

pytestmark = pytest.mark.slow


def deliver(url: str, evt: dict) -> int | None:
    body = json.dumps(evt).encode()
    try:
        return requests.post(
            f"{url}/webhooks/stripe",
            data=body,
            headers={"Stripe-Signature": se.sign(body), "Content-Type": "application/json"},
            timeout=5,
        ).status_code
    except requests.RequestException:
        return None


def test_outage_then_redelivery_processes_every_event_once(
    committed_app, console_process, pg_superuser_url
):
    rng = random.Random(7)
    n = max(40, RUNS // 10)
    with committed_app.app_context():
        s = db.session()
        orders = [make_order(s, status=OrderStatus.PAID, amount=1000 + i) for i in range(n)]
        s.commit()
        events = [
            se.event("payment_intent.succeeded", se.payment_intent(o.payment_intent_id, o.amount))
            for o in orders
        ]
    server = console_process()
    pending: list[dict] = []
    acknowledged: list[dict] = []
    deliveries = 0

    def send(evt: dict) -> None:
        nonlocal deliveries
        deliveries += 1
        status = deliver(server.url, evt)
        (acknowledged if status is not None and 200 <= status < 300 else pending).append(evt)

    third = n // 3
    for evt in events[:third]:
        send(evt)

    # The next event is stored, then its processing waits on the held order row: kill it there.
    victim = events[third]
    conn = psycopg.connect(libpq(pg_superuser_url))
    conn.execute(
        "SELECT id FROM orders WHERE payment_intent_id = %s FOR UPDATE",
        (victim["data"]["object"]["id"],),
    )
    hung = threading.Thread(target=send, args=(victim,))
    hung.start()
    wait_for(
        lambda: conn.execute(
            "SELECT 1 FROM webhook_events WHERE event_id = %s", (victim["id"],)
        ).fetchone(),
        what="the event to be stored",
    )
    server.kill()
    conn.rollback()
    conn.close()
    hung.join(10)

    for evt in events[third + 1 : 2 * third]:  # the outage: nothing answers
        send(evt)
    server.start()
    for evt in events[2 * third :]:
        send(evt)
    # Stripe retries what failed, and may redeliver what it already had acknowledged.
    rounds = 0
    while pending and rounds < 10:
        rounds += 1
        retry, pending[:] = list(pending), []
        for evt in retry:
            send(evt)
    for evt in rng.sample(acknowledged, k=min(10, len(acknowledged))):
        send(evt)

    assert pending == []
    with psycopg.connect(libpq(pg_superuser_url)) as check:
        rows = check.execute(
            "SELECT e.event_id, e.status, e.attempts, e.processed_at IS NOT NULL, o.status "
            "FROM webhook_events e JOIN orders o ON o.payment_intent_id = e.object_id"
        ).fetchall()
    assert len(rows) == n, f"{len(rows)} of {n} events stored"
    not_once = [r for r in rows if (r[1], r[2], r[3]) != ("processed", 1, True)]
    assert not_once == [], f"{len(not_once)} of {n} events not processed exactly once"
    assert all(r[4] == "confirmed" for r in rows)
    assert deliveries > n  # it took redeliveries to get there
