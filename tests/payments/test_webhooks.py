"""POST /webhooks/stripe: verified, stored verbatim and queued; processed once, never backwards.

Intake answers `received` once the event and its job are committed; what an
event does is applied by the worker's function (`se.process`). The real
worker process is exercised in test_webhook_worker.py.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import select

from console import db
from console.integrations.models import OutboxEvent
from console.inventory.models import InventoryItem, InventoryReservation, ReservationStatus
from console.orders.models import Order, OrderStatus
from console.payments.models import WebhookEvent, WebhookRejection, WebhookStatus
from tests import stripe_events as se
from tests.factories import make_order


def get_order(app, external_id: str) -> Order:
    with app.app_context():
        return db.session().scalar(select(Order).where(Order.external_id == external_id))


def get_event(app, event_id: str) -> WebhookEvent | None:
    with app.app_context():
        return db.session().scalar(select(WebhookEvent).where(WebhookEvent.event_id == event_id))


def rejections(app) -> list[WebhookRejection]:
    with app.app_context():
        return list(db.session().scalars(select(WebhookRejection)))


@pytest.fixture
def paid_order(app) -> Order:
    with app.app_context():
        s = db.session()
        order = make_order(s, status=OrderStatus.PAID, amount=4200, currency="EUR")
        s.add(InventoryItem(sku="SKU-1", name="Mug", stock_count=10))
        s.flush()
        s.add(
            InventoryReservation(
                external_id=f"res-{order.id}", order_id=order.id, sku="SKU-1", quantity=1
            )
        )
        s.commit()
        return order


def test_succeeded_event_confirms_order_and_reservation(app, client, paid_order):
    evt = se.event(
        "payment_intent.succeeded", se.payment_intent(paid_order.payment_intent_id, 4200)
    )
    resp = se.post(client, evt)
    assert resp.status_code == 200, resp.data
    assert resp.get_json()["status"] == "received"  # stored and queued, not yet applied
    assert get_event(app, evt["id"]).status == WebhookStatus.RECEIVED
    assert get_order(app, paid_order.external_id).status == OrderStatus.PAID
    assert se.process(app)["processed"] == 1
    order = get_order(app, paid_order.external_id)
    assert order.status == OrderStatus.CONFIRMED
    assert order.webhook_processed_at is not None and order.confirmed_at is not None
    stored = get_event(app, evt["id"])
    assert stored.status == WebhookStatus.PROCESSED
    assert json.loads(stored.raw_body) == evt  # kept verbatim
    with app.app_context():
        res = db.session().scalar(select(InventoryReservation))
        assert res.status == ReservationStatus.CONFIRMED


def test_bad_signature_is_400_recorded_and_not_processed(app, client, paid_order):
    evt = se.event(
        "payment_intent.succeeded", se.payment_intent(paid_order.payment_intent_id, 4200)
    )
    resp = se.post(client, evt, secret="whsec_wrong")
    assert resp.status_code == 400
    assert get_event(app, evt["id"]) is None
    assert get_order(app, paid_order.external_id).status == OrderStatus.PAID
    [rej] = rejections(app)
    assert "signature" in rej.reason and rej.claimed_event_id == evt["id"]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'webhook_events_total{status="error"}' in metrics


def test_stale_signature_is_refused(app, client, paid_order):
    evt = se.event(
        "payment_intent.succeeded", se.payment_intent(paid_order.payment_intent_id, 4200)
    )
    body = json.dumps(evt).encode()
    old = se.sign(body, timestamp=int(time.time()) - 301)
    resp = client.post(
        "/webhooks/stripe",
        data=body,
        headers={"Stripe-Signature": old, "Content-Type": "application/json"},
    )
    assert resp.status_code == 400


def test_secret_rotation_two_signatures_accepted(app, client, paid_order):
    evt = se.event(
        "payment_intent.succeeded", se.payment_intent(paid_order.payment_intent_id, 4200)
    )
    body = json.dumps(evt).encode()
    old = se.sign(body, secret="whsec_old_secret")
    new = se.sign(body)
    header = f"{old},{new.split(',')[1]}"
    resp = client.post(
        "/webhooks/stripe",
        data=body,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    )
    assert resp.status_code == 200


def test_redelivery_is_acknowledged_and_processed_once(app, client, paid_order):
    evt = se.event(
        "payment_intent.succeeded", se.payment_intent(paid_order.payment_intent_id, 4200)
    )
    assert se.post_processed(client, app, evt).status_code == 200
    again = se.post(client, evt)
    assert again.status_code == 200 and again.get_json()["status"] == "duplicate"
    assert se.process(app)["claimed"] == 0  # nothing queued for a processed event
    stored = get_event(app, evt["id"])
    assert stored.deliveries == 2 and stored.attempts == 1


def test_redelivery_before_processing_is_stored_once_and_processed_once(app, client, paid_order):
    evt = se.event(
        "payment_intent.succeeded", se.payment_intent(paid_order.payment_intent_id, 4200)
    )
    assert se.post(client, evt).get_json()["status"] == "received"
    assert se.post(client, evt).get_json()["status"] == "duplicate"
    assert se.process(app)["processed"] == 1
    stored = get_event(app, evt["id"])
    assert stored.deliveries == 2 and stored.attempts == 1
    assert stored.status == WebhookStatus.PROCESSED


def shop_events(app) -> list[tuple[str, str, int, str | None, str | None]]:
    with app.app_context():
        return [
            (e.type, e.record_id, e.record_seq, e.data["record"]["status"], e.actor["sub"])
            for e in db.session().scalars(select(OutboxEvent).order_by(OutboxEvent.id))
        ]


def test_the_shop_hears_of_each_order_stripe_changed_once(app, client, paid_order):
    ext, pi = paid_order.external_id, paid_order.payment_intent_id
    se.post_processed(
        client, app, se.event("payment_intent.succeeded", se.payment_intent(pi, 4200))
    )
    applied = ("order.stripe_event_applied", ext, 1, "confirmed", "system:stripe-webhooks")
    assert shop_events(app) == [applied]
    # A late failure changes nothing on the order; an unknown type touches no order;
    # an event that fails rolls back with its savepoint: none of them tells the shop.
    late = se.payment_intent(pi, 4200, status="requires_payment_method")
    se.post_processed(client, app, se.event("payment_intent.payment_failed", late))
    se.post_processed(
        client, app, se.event("customer.created", {"id": "cus_1", "object": "customer"})
    )
    se.post_processed(
        client, app, se.event("payment_intent.succeeded", se.payment_intent("pi_x", 1))
    )
    assert shop_events(app) == [applied]
    # The refund is the order's second event.
    charge = {"id": "ch_1", "object": "charge", "payment_intent": pi, "amount": 4200,
              "amount_refunded": 4200, "currency": "eur"}  # fmt: skip
    se.post_processed(client, app, se.event("charge.refunded", charge))
    refunded = ("order.stripe_event_applied", ext, 2, "refunded", "system:stripe-webhooks")
    assert shop_events(app) == [applied, refunded]
    with app.app_context():
        last = db.session().scalars(select(OutboxEvent).order_by(OutboxEvent.id.desc())).first()
        assert last.reason.startswith("Stripe charge.refunded evt_")


def test_amount_mismatch_flags_order_and_never_confirms(app, client, paid_order):
    evt = se.event(
        "payment_intent.succeeded", se.payment_intent(paid_order.payment_intent_id, 4100)
    )
    assert se.post_processed(client, app, evt).status_code == 200
    order = get_order(app, paid_order.external_id)
    assert order.amount_mismatch is True
    assert order.status == OrderStatus.PAID


def test_currency_mismatch_flags_order(app, client, paid_order):
    evt = se.event(
        "payment_intent.succeeded", se.payment_intent(paid_order.payment_intent_id, 4200, "usd")
    )
    se.post_processed(client, app, evt)
    assert get_order(app, paid_order.external_id).amount_mismatch is True


def test_late_failure_event_never_moves_order_backwards(app, client, paid_order):
    pi = paid_order.payment_intent_id
    se.post_processed(
        client, app, se.event("payment_intent.succeeded", se.payment_intent(pi, 4200))
    )
    failed = se.payment_intent(
        pi, 4200, status="requires_payment_method", last_payment_error={"message": "declined"}
    )
    late = se.event("payment_intent.payment_failed", failed)
    assert se.post_processed(client, app, late).status_code == 200
    assert get_order(app, paid_order.external_id).status == OrderStatus.CONFIRMED


def test_unknown_type_is_stored_and_ignored(app, client):
    evt = se.event("customer.created", {"id": "cus_123", "object": "customer"})
    resp = se.post_processed(client, app, evt)
    assert resp.status_code == 200
    assert get_event(app, evt["id"]).status == WebhookStatus.IGNORED


def test_unknown_payment_intent_fails_the_event_clearly(app, client):
    evt = se.event("payment_intent.succeeded", se.payment_intent("pi_nobody_knows", 999))
    resp = se.post(client, evt)
    assert resp.status_code == 200  # stored; what processing finds is the worker's business
    assert se.process(app)["failed"] == 1
    stored = get_event(app, evt["id"])
    assert stored.status == WebhookStatus.FAILED
    assert "no order references pi_nobody_knows" in stored.last_error
    assert stored.processed_at is None  # replayable
    assert se.process(app)["claimed"] == 0  # not retried by itself: a retry cannot help


@pytest.mark.parametrize(
    ("body", "content_type", "status", "stored"),
    [
        (b"not json", "application/json", 200, 1),
        (json.dumps({"id": "evt_1", "type": "x"}).encode(), "application/json", 200, 1),
        (json.dumps({"id": "evt_1", "type": "x", "data": {}}).encode(), "application/json", 200, 1),
        (b"{}", "text/plain", 415, 0),
    ],
)
def test_bad_bodies_get_clear_statuses(app, client, body, content_type, status, stored):
    """Signed but unprocessable: kept as a failed event and answered 200 (Stripe stops)."""
    resp = client.post(
        "/webhooks/stripe",
        data=body,
        headers={"Stripe-Signature": se.sign(body), "Content-Type": content_type},
    )
    assert resp.status_code == status
    assert resp.is_json and resp.get_json()["error"]
    with app.app_context():
        rows = db.session().scalars(select(WebhookEvent)).all()
        assert len(rows) == stored
        assert all(r.status == WebhookStatus.FAILED and r.processed_at is None for r in rows)


def test_oversized_body_is_413(app, client):
    body = b'{"pad": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    resp = client.post(
        "/webhooks/stripe",
        data=body,
        headers={"Stripe-Signature": se.sign(body), "Content-Type": "application/json"},
    )
    assert resp.status_code == 413


def test_webhook_needs_no_session_or_csrf(app, client, paid_order):
    # No login, no CSRF token: the signature alone is the credential.
    evt = se.event(
        "payment_intent.succeeded", se.payment_intent(paid_order.payment_intent_id, 4200)
    )
    assert se.post(client, evt).status_code == 200


@pytest.mark.slow
def test_five_simultaneous_deliveries_store_once_and_a_worker_processes_once(
    committed_app, start_worker
):
    with committed_app.app_context():
        s = db.session()
        order = make_order(s, status=OrderStatus.PAID)
        s.commit()
    evt = se.event(
        "payment_intent.succeeded", se.payment_intent(order.payment_intent_id, order.amount)
    )
    barrier = threading.Barrier(5)
    statuses: list[int] = []

    def deliver() -> None:
        c = committed_app.test_client()
        barrier.wait()
        statuses.append(se.post(c, evt).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert statuses == [200] * 5
    stored = get_event(committed_app, evt["id"])
    assert stored.deliveries == 5 and stored.attempts == 0  # stored once, not yet processed
    start_worker()
    deadline = time.monotonic() + 30
    while get_event(committed_app, evt["id"]).processed_at is None:
        assert time.monotonic() < deadline, "the worker did not process the event"
        time.sleep(0.1)
    stored = get_event(committed_app, evt["id"])
    assert stored.status == WebhookStatus.PROCESSED and stored.attempts == 1
    assert get_order(committed_app, order.external_id).status == OrderStatus.CONFIRMED


def test_webhooks_page_lists_filters_and_shows_redacted_body(app, auth, client, paid_order):
    evt = se.event(
        "payment_intent.succeeded",
        se.payment_intent(paid_order.payment_intent_id, 4200, client_secret="pi_123_secret_abc"),
    )
    se.post_processed(client, app, evt)
    se.post(client, se.event("customer.created", {"id": "cus_9", "object": "customer"}))
    se.post(client, evt, secret="whsec_wrong")  # a rejected delivery too
    auth.as_role("support")
    page = client.get("/webhooks").get_data(as_text=True)
    assert evt["id"] in page and "customer.created" in page
    only = client.get("/webhooks?type=customer.created").get_data(as_text=True)
    assert "customer.created" in only and evt["id"] not in only
    rejected = client.get("/webhooks?tab=rejected").get_data(as_text=True)
    assert "signature verification failed" in rejected
    detail = client.get(f"/webhooks/{evt['id']}").get_data(as_text=True)
    assert "pi_123_secret_abc" not in detail and "[redacted]" in detail
    assert client.get("/webhooks/evt_nope").status_code == 404
    bad = client.get("/webhooks?since=soonish")
    assert bad.status_code == 200 and "is not a date" in bad.get_data(as_text=True)


def test_dispute_blocks_the_payout_and_transfer_is_recorded(app, client):
    from console.payouts.models import DisputeStatus, Seller, SellerPayout

    with app.app_context():
        s = db.session()
        order = make_order(s, status=OrderStatus.DELIVERED, payment_intent_id="pi_disputed_1")
        seller = Seller(email="seller@example.com", stripe_account_id="acct_1")
        s.add(seller)
        s.flush()
        s.add(
            SellerPayout(
                external_id="PO-T1",
                order_id=order.id,
                seller_id=seller.id,
                amount=3000,
                currency="EUR",
                destination_account="acct_1",
            )
        )
        s.commit()
    dispute = {
        "id": "dp_1",
        "object": "dispute",
        "charge": "ch_1",
        "payment_intent": "pi_disputed_1",
        "created": 1_700_000_000,
    }
    assert se.post(client, se.event("charge.dispute.created", dispute)).status_code == 200
    transfer = {"id": "tr_1", "object": "transfer", "metadata": {"payout_id": "PO-T1"}}
    assert se.post(client, se.event("transfer.created", transfer)).status_code == 200
    assert se.process(app)["processed"] == 2
    with app.app_context():
        payout = db.session().scalar(
            select(SellerPayout).where(SellerPayout.external_id == "PO-T1")
        )
        assert payout.dispute_status == DisputeStatus.OPEN and payout.dispute_opened_at is not None
        assert payout.stripe_transfer_id == "tr_1"
