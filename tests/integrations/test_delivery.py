"""Delivering events to the reference shop: signed, retried, applied exactly once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select, update

from console import db
from console.db import utcnow
from console.integrations.delivery import RetryPolicy, deliver_due, new_secret, seal
from console.integrations.models import DeliveryStatus, EventDelivery, OutboxEvent, WebhookEndpoint
from console.integrations.outbox import emit
from console.orders.models import OrderStatus
from tests.actions.helpers import confirm_form, submit
from tests.factories import make_order


def add_endpoint(app, shop, secret: str | None = None) -> tuple[int, str]:
    secret = secret or new_secret()
    with app.app_context():
        s = db.session()
        e = WebhookEndpoint(url=shop.webhook_url, secret_enc=seal(secret), created_by_sub="t")
        s.add(e)
        s.commit()
        shop.set_secret(secret)
        return e.id, secret


def shop_order(shop, external_id: str, status: str = "pending") -> None:
    shop.store.put("order", {"id": external_id, "status": status, "amount": 4200,
                             "currency": "EUR", "customer_email": "b@example.com"})  # fmt: skip


def deliveries(app) -> list[EventDelivery]:
    with app.app_context():
        return list(db.session().scalars(select(EventDelivery).order_by(EventDelivery.id)))


def make_due(app) -> None:
    with app.app_context():
        s = db.session()
        s.execute(
            update(EventDelivery)
            .where(EventDelivery.status == DeliveryStatus.PENDING)
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
        s.commit()


def run(app, **kw):
    with app.app_context():
        return deliver_due(db.session(), **kw)


def test_retried_after_the_shop_fails_and_applied_once(app, auth, client, shop):
    with app.app_context():
        s = db.session()
        order = make_order(s, status=OrderStatus.PENDING, paid_at=None, payment_intent_id=None)
        s.commit()
    shop_order(shop, order.external_id)
    add_endpoint(app, shop)
    auth.as_role("admin")
    assert submit(client, "orders:order:cancel", order.external_id).status_code == 303

    shop.fail_next(2)  # the shop is down for two attempts
    first = run(app)
    assert (first.scanned, first.acted, first.retried) == (1, 0, 1)
    [d] = deliveries(app)
    assert d.status == DeliveryStatus.PENDING and d.attempts == 1
    assert d.last_status_code == 503 and "temporarily unavailable" in d.last_response_excerpt
    assert d.next_attempt_at > utcnow()
    assert run(app).scanned == 0  # not due yet: backoff
    make_due(app)
    assert run(app).retried == 1
    make_due(app)
    done = run(app)
    assert (done.scanned, done.acted) == (1, 1)
    [d] = deliveries(app)
    assert d.status == DeliveryStatus.SUCCEEDED and d.attempts == 3 and d.last_status_code == 200

    applied = [e for e in shop.store.events() if e["outcome"] == "applied"]
    assert len(applied) == 1 and applied[0]["type"] == "order.cancelled"
    assert shop.store.get("order", order.external_id)["status"] == "cancelled"

    # Redeliver (a guarded action): the shop gets the same webhook-id and applies nothing twice.
    form = confirm_form(client, "integrations:delivery:redeliver", str(d.id))
    resp = client.post(f"/actions/integrations:delivery:redeliver/{d.id}",
                       data={**form, "reason": "Shop restored from a backup"})  # fmt: skip
    assert resp.status_code == 303
    assert run(app).acted == 1
    outcomes = [e["outcome"] for e in shop.store.events()]
    assert outcomes == ["applied"]  # the second copy was recognised by its webhook-id
    with app.app_context():
        assert db.session().get(EventDelivery, d.id).attempts == 4


def test_the_shop_verifies_signatures_and_secret_rotation_overlaps(app, auth, client, shop):
    with app.app_context():
        s = db.session()
        order = make_order(s, status=OrderStatus.PENDING, paid_at=None, payment_intent_id=None)
        s.commit()
    shop_order(shop, order.external_id)
    endpoint_id, _old_secret = add_endpoint(app, shop)
    # A forged call is refused by the shop's standardwebhooks check.
    forged = requests.post(
        shop.webhook_url,
        data='{"type":"order.cancelled"}',
        headers={"webhook-id": "msg_x", "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"},
        timeout=5,
    )
    assert forged.status_code == 400

    auth.as_role("admin")
    form = confirm_form(client, "integrations:endpoint:rotate_secret", str(endpoint_id))
    resp = client.post(f"/actions/integrations:endpoint:rotate_secret/{endpoint_id}",
                       data={**form, "reason": "Yearly secret rotation", "overlap_hours": "2"})  # fmt: skip
    assert resp.status_code == 200 and 'id="revealed-secret"' in resp.get_data(as_text=True)
    assert submit(client, "orders:order:cancel", order.external_id).status_code == 303
    # The shop still has the old secret: the second signature (old secret) verifies.
    assert run(app).acted == 1
    assert shop.store.events()[0]["outcome"] == "applied"

    with app.app_context():  # the overlap is over; a shop that never switched is refused
        s = db.session()
        s.get(WebhookEndpoint, endpoint_id).previous_secret_expires_at = utcnow()
        event = s.scalar(select(OutboxEvent))
        order_row = s.get(type(order), order.id)
        emit(s, "order.cancelled", order_row, actor={"sub": "t"}, reason="t", audit_seq=None)
        s.commit()
    assert shop.store.events()[0]["webhook_id"] == event.event_id
    report = run(app)
    assert report.retried == 1
    assert deliveries(app)[-1].last_status_code == 400


def test_a_delivery_that_never_succeeds_is_failed_counted_and_alerted(app, client, shop):
    with app.app_context():
        s = db.session()
        order = make_order(s)
        s.commit()
    add_endpoint(app, shop)
    shop.fail_next(100)
    with app.app_context():
        s = db.session()
        emit(s, "order.cancelled", s.get(type(order), order.id), actor={}, reason="r", audit_seq=1)
        s.commit()
    report = run(app, policy=RetryPolicy(base_seconds=30, cap_seconds=60, window_seconds=10))
    assert (report.failed, report.errors) == (1, 1)
    [d] = deliveries(app)
    assert d.status == DeliveryStatus.FAILED and d.next_attempt_at is None
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "outbound_webhook_deliveries_failed 1.0" in metrics
    assert 'outbound_webhook_deliveries_total{status="failed"}' in metrics
    from pathlib import Path

    rules = Path(__file__).resolve().parents[2].joinpath("deploy/prometheus/alerts.yml").read_text()
    assert "outbound_webhook_deliveries_failed > 0" in rules


def test_backoff_grows_with_jitter_and_stays_under_the_cap():
    import random

    policy = RetryPolicy(base_seconds=30, cap_seconds=3600, window_seconds=3 * 86400)
    rng = random.Random(7)
    delays = [policy.delay(n, rng).total_seconds() for n in range(1, 12)]
    assert 15 <= delays[0] <= 30 and 30 <= delays[1] <= 60
    assert all(d <= 3600 for d in delays) and delays[-1] >= 1800
    assert len({round(d) for d in delays[-4:]}) > 1  # jittered, not one fixed value


@pytest.mark.slow
def test_two_delivery_processes_at_once_send_each_event_once(committed_app, shop):
    app = committed_app
    add_endpoint(app, shop)
    with app.app_context():
        s = db.session()
        for _ in range(12):
            o = make_order(s)
            shop_order(shop, o.external_id)
            emit(s, "order.cancelled", o, actor={}, reason="r", audit_seq=None)
        s.commit()
    barrier = threading.Barrier(2)
    reports = []

    def worker() -> None:
        with app.app_context():
            barrier.wait()
            reports.append(deliver_due(db.session(), limit=50))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(r.acted for r in reports) == 12
    events = shop.store.events()
    assert len(events) == 12 and {e["outcome"] for e in events} == {"applied"}
    assert all(d.attempts == 1 for d in deliveries(app))
