"""An endpoint outage followed by redelivery processes 100 % of events, once each.

A sender plays Stripe: it delivers signed events to a real gunicorn and keeps
every delivery that got no 2xx for a later retry, as Stripe does (and, as
Stripe may, it also redelivers some that were acknowledged). Midway the
console is SIGKILLed while a delivery is in flight, stays down while events
keep coming, and is started again. Intake only stores; a real job worker,
started while the deliveries go on, applies what was stored, and its order
row for one event is held for a while so that worker waits in the middle of
a batch. Figure: after redelivery every event is processed exactly once
(processed, one processing attempt, its effect applied once), however many
deliveries it took.
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
    committed_app, console_process, pg_superuser_url, start_worker
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
    # The worker's batch will wait on this order row while deliveries go on.
    victim = events[third // 2]
    conn = psycopg.connect(libpq(pg_superuser_url))
    conn.execute(
        "SELECT id FROM orders WHERE payment_intent_id = %s FOR UPDATE",
        (victim["data"]["object"]["id"],),
    )
    for evt in events[:third]:
        send(evt)
    start_worker()

    # A delivery in flight when the console is SIGKILLed.
    hung = threading.Thread(target=send, args=(events[third],))
    hung.start()
    server.kill()
    hung.join(10)
    conn.rollback()  # the worker goes on
    conn.close()

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

    def rows() -> list[tuple]:
        with psycopg.connect(libpq(pg_superuser_url)) as check:
            return check.execute(
                "SELECT e.event_id, e.status, e.attempts, e.processed_at IS NOT NULL, o.status "
                "FROM webhook_events e JOIN orders o ON o.payment_intent_id = e.object_id"
            ).fetchall()

    wait_for(
        lambda: len(rows()) == n and all(r[3] for r in rows()),
        timeout=90,
        what="the worker to apply every stored event",
    )
    found = rows()
    assert len(found) == n, f"{len(found)} of {n} events stored"
    not_once = [r for r in found if (r[1], r[2], r[3]) != ("processed", 1, True)]
    assert not_once == [], f"{len(not_once)} of {n} events not processed exactly once"
    assert all(r[4] == "confirmed" for r in found)
    assert deliveries > n  # it took redeliveries to get there
