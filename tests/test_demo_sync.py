"""`demo seed` then `demo stripe-sync`: the seeded cases exist at the Stripe double."""

from __future__ import annotations

from sqlalchemy import select

from console import db
from console.orders.models import Order
from console.payments.models import WebhookEvent


def test_seed_then_stripe_sync_is_idempotent(app, stripe, stripe_client):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["demo", "seed", "--orders", "50"]).exit_code == 0
    first = runner.invoke(args=["demo", "stripe-sync"])
    assert first.exit_code == 0, first.output
    assert "payment_intents=" in first.output and "payment_intents=0" not in first.output
    with app.app_context():
        s = db.session()
        order = s.scalar(select(Order).where(Order.external_id == "ORD-DEMO-0003"))
        pi = stripe_client.v1.payment_intents.retrieve(order.payment_intent_id)
        assert pi.status == "succeeded" and pi.amount == 1290  # the mismatch is real at Stripe
        event = s.scalar(select(WebhookEvent).where(WebhookEvent.event_id == "evt_demo_stuck_0001"))
        stuck = s.scalar(select(Order).where(Order.external_id == "ORD-DEMO-0001"))
        assert event.object_id == stuck.payment_intent_id
        assert stuck.payment_intent_id in event.raw_body
    again = runner.invoke(args=["demo", "stripe-sync"])
    assert again.exit_code == 0 and "payment_intents=0" in again.output


def test_demo_seed_is_refused_in_production(pg_url, idp, stripe_double):
    from console import create_app
    from tests.conftest import app_config

    prod = create_app(app_config(pg_url, idp, stripe_double, CONSOLE_ENV="production"))
    result = prod.test_cli_runner().invoke(args=["demo", "seed"])
    assert result.exit_code != 0
    assert "refused" in result.output
