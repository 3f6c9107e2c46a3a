"""Stored webhook events applied by real job worker processes, once each.

Intake answers as soon as the event is stored; `webhooks.drain` (deferred
every second by the engine's schedule) applies what waits. Figures: 30
events from 3 concurrent senders applied once each by two workers; a worker
SIGKILLed while holding a batch loses nothing and applies nothing twice; the
page shows received, then processed or failed, and replay still works.
"""

from __future__ import annotations

import threading

import psycopg
import pytest
from sqlalchemy import select

from console import db
from console.integrations.models import OutboxEvent
from console.orders.models import Order, OrderStatus
from console.payments.models import WebhookEvent, WebhookStatus
from tests import stripe_events as se
from tests.actions.helpers import confirm_form, submit
from tests.conftest import libpq, wait_for
from tests.factories import make_order

pytestmark = pytest.mark.slow


def events_by_status(app) -> dict[str, int]:
    with app.app_context():
        rows = db.session().scalars(select(WebhookEvent)).all()
        out: dict[str, int] = {}
        for r in rows:
            out[r.status.value] = out.get(r.status.value, 0) + 1
        return out


def test_two_workers_apply_thirty_events_once_each(committed_app, start_worker):
    with committed_app.app_context():
        s = db.session()
        orders = [make_order(s, status=OrderStatus.PAID, amount=1000 + i) for i in range(30)]
        s.commit()
        events = [
            se.event("payment_intent.succeeded", se.payment_intent(o.payment_intent_id, o.amount))
            for o in orders
        ]
    answers: list[str] = []

    def sender(chunk: list[dict]) -> None:
        c = committed_app.test_client()
        for evt in chunk:
            answers.append(se.post(c, evt).get_json()["status"])

    threads = [threading.Thread(target=sender, args=(events[i::3],)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert answers.count("received") == 30
    start_worker()
    start_worker()
    assert wait_for(lambda: events_by_status(committed_app) == {"processed": 30}), events_by_status(
        committed_app
    )
    with committed_app.app_context():
        s = db.session()
        assert {e.attempts for e in s.scalars(select(WebhookEvent))} == {1}
        statuses = {o.status for o in s.scalars(select(Order))}
        assert statuses == {OrderStatus.CONFIRMED}
        # Each confirmation told the shop once, in the transaction that applied it.
        told = [(e.type, e.record_id, e.record_seq) for e in s.scalars(select(OutboxEvent))]
        assert sorted(told) == sorted(
            ("order.stripe_event_applied", o.external_id, 1) for o in orders
        )


def test_worker_killed_holding_a_batch_loses_nothing_and_applies_nothing_twice(
    committed_app, start_worker, pg_superuser_url
):
    with committed_app.app_context():
        s = db.session()
        orders = [make_order(s, status=OrderStatus.PAID, amount=2000 + i) for i in range(5)]
        s.commit()
    c = committed_app.test_client()
    for o in orders:
        evt = se.event("payment_intent.succeeded", se.payment_intent(o.payment_intent_id, o.amount))
        assert se.post(c, evt).status_code == 200
    # Hold the first order's row: the worker's batch waits there, events claimed.
    conn = psycopg.connect(libpq(pg_superuser_url))
    conn.execute("SELECT id FROM orders WHERE id = %s FOR UPDATE", (orders[0].id,))
    first = start_worker()

    def blocked() -> bool:
        with psycopg.connect(libpq(pg_superuser_url), autocommit=True) as check:
            row = check.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            ).fetchone()
            return bool(row and row[0])

    assert wait_for(blocked, timeout=30), "the worker never reached the held row"
    first.kill()
    conn.rollback()
    conn.close()
    start_worker()
    assert wait_for(lambda: events_by_status(committed_app) == {"processed": 5}), events_by_status(
        committed_app
    )
    with committed_app.app_context():
        s = db.session()
        assert {e.attempts for e in s.scalars(select(WebhookEvent))} == {1}
        assert {o.status for o in s.scalars(select(Order))} == {OrderStatus.CONFIRMED}


def test_page_shows_received_then_the_worker_result_and_replay_works(
    committed_app, start_worker, idp
):
    from tests.conftest import AuthActions

    evt = se.event("payment_intent.succeeded", se.payment_intent("pi_not_yet_known", 700))
    c = committed_app.test_client()
    assert se.post(c, evt).get_json()["status"] == "received"
    auth = AuthActions(c, idp)
    auth.as_role("admin")
    page = c.get("/webhooks?status=received").get_data(as_text=True)
    assert evt["id"] in page and "queued" in page
    start_worker()

    def failed() -> WebhookEvent | None:
        with committed_app.app_context():
            row = db.session().scalar(
                select(WebhookEvent).where(WebhookEvent.event_id == evt["id"])
            )
            return row if row is not None and row.status == WebhookStatus.FAILED else None

    row = wait_for(failed, timeout=30)
    assert row is not None and "no order references pi_not_yet_known" in row.last_error
    page = c.get("/webhooks?status=attention").get_data(as_text=True)
    assert evt["id"] in page and "failed" in page
    # The order arrives; a person replays the event.
    with committed_app.app_context():
        s = db.session()
        order = make_order(
            s, status=OrderStatus.PAID, amount=700, payment_intent_id="pi_not_yet_known"
        )
        s.commit()
        external_id = order.external_id
    form = confirm_form(c, "webhooks:event:replay", evt["id"])
    resp = submit(c, "webhooks:event:replay", evt["id"], form=form, reason="order arrived late")
    assert resp.status_code in (200, 303), resp.get_data(as_text=True)[:500]
    with committed_app.app_context():
        s = db.session()
        row = s.scalar(select(WebhookEvent).where(WebhookEvent.event_id == evt["id"]))
        assert row.status == WebhookStatus.PROCESSED and row.processed_at is not None
        order = s.scalar(select(Order).where(Order.external_id == external_id))
        assert order.status == OrderStatus.CONFIRMED
    detail = c.get(f"/webhooks/{evt['id']}").get_data(as_text=True)
    assert "processed" in detail
