"""Webhook intake: hostile bodies get 400 unsigned, or a stored failed event and 200 signed."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from console import db
from console.cardnumbers import contains_pan
from console.orders.models import Order, OrderStatus
from console.payments.models import Payment, WebhookEvent, WebhookRejection, WebhookStatus
from tests import stripe_events as se
from tests.factories import make_order


def deep(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


def evt_text(**overrides: str) -> str:
    """A valid event's JSON text with raw JSON fragments substituted for some fields."""
    base = {"id": '"evt_hostile_1"', "type": '"customer.created"', "created": "1767225600"}
    base["data"] = '{"object": {"id": "cus_1", "note": "x"}}'
    base.update(overrides)
    return "{" + ", ".join(f'"{k}": {v}' for k, v in base.items()) + "}"


HOSTILE = {
    "nested 40 deep": evt_text(data='{"object": ' + deep(40) + "}"),
    "nested 100000 deep": evt_text(data='{"object": ' + deep(100_000) + "}"),
    "oversized field": evt_text(data='{"object": {"id": "cus_1", "x": "' + "y" * 70_000 + '"}}'),
    "id longer than its column": evt_text(id='"evt_' + "1" * 300 + '"'),
    "type longer than its column": evt_text(type='"' + "t" * 200 + '"'),
    "object id longer than its column": evt_text(data='{"object": {"id": "' + "c" * 300 + '"}}'),
    "NUL in a value": evt_text(data='{"object": {"id": "cus_1", "name": "a\\u0000b"}}'),
    "NUL in the id": evt_text(id='"evt_\\u0000"'),
    "NaN": evt_text(data='{"object": {"id": "cus_1", "amount": NaN}}'),
    "Infinity float": evt_text(data='{"object": {"id": "cus_1", "amount": 1e400}}'),
    "int beyond 64 bits": evt_text(
        data='{"object": {"id": "cus_1", "amount": 123456789012345678901234}}'
    ),
    "created out of range": evt_text(created="99999999999999"),
}


def post_raw(client, text: str, *, signed: bool):
    body = text.encode()
    sig = se.sign(body) if signed else se.sign(body, secret="whsec_not_the_secret")
    return client.post(
        "/webhooks/stripe",
        data=body,
        headers={"Stripe-Signature": sig, "Content-Type": "application/json"},
    )


def table_counts(app) -> tuple[int, int]:
    with app.app_context():
        s = db.session()
        return (
            s.scalar(select(func.count()).select_from(WebhookEvent)) or 0,
            s.scalar(select(func.count()).select_from(WebhookRejection)) or 0,
        )


@pytest.mark.parametrize("name", list(HOSTILE))
def test_unsigned_hostile_body_is_400_and_only_a_rejection(app, client, name):
    """Figure: 12 hostile shapes unsigned: 400 each, 1 rejection row, 0 events."""
    resp = post_raw(client, HOSTILE[name], signed=False)
    assert resp.status_code == 400, name
    assert resp.is_json and "signature" in resp.get_json()["error"]
    assert table_counts(app) == (0, 1)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_signed_hostile_body_is_stored_failed_with_reason_and_200(app, client, name):
    """Figure: 12 hostile shapes signed: 200 each, 1 failed event with its reason, 0 processed."""
    resp = post_raw(client, HOSTILE[name], signed=True)
    assert resp.status_code == 200, (name, resp.get_data(as_text=True)[:300])
    assert resp.get_json()["status"] == "failed"
    with app.app_context():
        rows = db.session().scalars(select(WebhookEvent)).all()
        assert len(rows) == 1
        row = rows[0]
        assert row.status == WebhookStatus.FAILED and row.processed_at is None
        assert row.last_error.startswith("unprocessable: ")
        assert "\x00" not in row.raw_body
    # Stripe redelivers once more: acknowledged, still one row.
    again = post_raw(client, HOSTILE[name], signed=True)
    assert again.status_code == 200
    assert table_counts(app) == (1, 0)


def test_permanent_database_refusal_is_not_a_503(app, client):
    """Figure: a signed event whose data the database refuses (int overflow): 200, not 503."""
    obj = {"id": "pi_overflow_1", "amount": 2**40, "currency": "eur", "status": "failed"}
    resp = se.post(client, se.event("payment_intent.payment_failed", obj))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["status"] == "received"  # stored; the worker finds the refusal
    counts = se.process(app)
    assert counts["failed"] == 1
    assert se.process(app)["claimed"] == 0  # not retried by itself: a retry cannot help
    with app.app_context():
        s = db.session()
        assert s.scalar(select(Payment).where(Payment.payment_intent_id == "pi_overflow_1")) is None
        row = s.scalar(select(WebhookEvent))
        assert row.status == WebhookStatus.FAILED and row.last_error


def test_stored_webhook_body_never_holds_a_card_number(app, client):
    """Figure: a PAN in a signed event's description is stored with its last 4 digits only."""
    with app.app_context():
        s = db.session()
        order = make_order(s, status=OrderStatus.PAID, amount=4200, currency="EUR")
        s.commit()
        pi_id, external_id = order.payment_intent_id, order.external_id
    obj = se.payment_intent(pi_id, 4200, description="card 4242 4242 4242 4242 exp 12/30")
    obj["metadata"] = {"order_id": external_id}
    resp = se.post(client, se.event("payment_intent.succeeded", obj))
    assert resp.status_code == 200
    with app.app_context():
        assert not contains_pan(db.session().scalar(select(WebhookEvent.raw_body)))
    se.process(app)
    with app.app_context():
        s = db.session()
        row = s.scalar(select(WebhookEvent))
        assert not contains_pan(row.raw_body)
        assert "**** **** **** 4242" in json.loads(row.raw_body)["data"]["object"]["description"]
        order = s.scalar(select(Order).where(Order.external_id == external_id))
        assert order.status == OrderStatus.CONFIRMED  # masking did not stop processing


def test_signed_unparseable_body_with_a_pan_is_masked_too(app, client):
    """Figure: an unparseable signed body is stored failed, its PAN masked."""
    resp = post_raw(client, '{"id": "evt_x", "note": "4111 1111 1111 1111", ', signed=True)
    assert resp.status_code == 200
    with app.app_context():
        row = db.session().scalar(select(WebhookEvent))
        assert row.status == WebhookStatus.FAILED
        assert not contains_pan(row.raw_body)


def test_stored_unprocessable_event_page_renders(app, auth, client):
    """Figure: the stored failed event's page answers 200 (deeply nested body included)."""
    post_raw(client, HOSTILE["nested 100000 deep"], signed=True)
    auth.as_role("support")
    with app.app_context():
        event_id = db.session().scalar(select(WebhookEvent.event_id))
    assert client.get(f"/webhooks/{event_id}").status_code == 200


@pytest.mark.parametrize(
    "fragment",
    [
        '"description": "card \\u0034242 4242 4242 4242"',  # a digit written as an escape
        '"description": "card 4242\\u00204242\\u002D4242 4242"',  # escaped separators
        '"amount_note": 4242424242424242',  # an integer
        '"4242424242424242": "as a key"',
    ],
)
def test_card_numbers_are_masked_however_the_json_writes_them(app, client, fragment):
    """Figure: a PAN behind JSON escapes, in an integer or in a key is stored masked."""
    text = evt_text(data='{"object": {"id": "cus_1", ' + fragment + "}}")
    resp = post_raw(client, text, signed=True)
    assert resp.status_code == 200 and resp.get_json()["status"] == "received"
    with app.app_context():
        raw = db.session().scalar(select(WebhookEvent.raw_body))
    assert not contains_pan(json.dumps(json.loads(raw), ensure_ascii=False))
    assert "4242" in raw


def test_nesting_just_past_the_limit_is_refused_even_in_a_short_body(app, client):
    """Figure: 33 levels in 150 bytes: stored failed with the reason, not processed."""
    resp = post_raw(client, evt_text(data='{"object": ' + deep(31) + "}"), signed=True)
    assert resp.status_code == 200 and resp.get_json()["status"] == "failed"
    with app.app_context():
        row = db.session().scalar(select(WebhookEvent))
        assert "nested deeper than 32" in row.last_error
