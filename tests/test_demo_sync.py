"""`demo seed` then `demo stripe-sync`: the seeded cases exist at the Stripe double."""

from __future__ import annotations

from sqlalchemy import select

from console import db
from console.orders.models import Order
from console.payments.models import WebhookEvent
from console.payouts.models import Approval, ApprovalStatus, SellerPayout
from console.payouts.release import changes_since_request, payload_hash, payout_payload
from console.reconciliation.models import FindingStatus, FindingType, ReconciliationFinding


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
        # Findings follow the sync: every open one names an object Stripe has.
        findings = list(
            s.scalars(
                select(ReconciliationFinding).where(
                    ReconciliationFinding.status == FindingStatus.OPEN
                )
            )
        )
        assert findings
        for finding in findings:
            if finding.type == FindingType.ORDER_PAID_NO_STRIPE:
                continue  # the case is that Stripe does not have it
            if finding.payment_intent_id:
                assert not finding.payment_intent_id.startswith("pi_demo_"), finding.fingerprint
                assert finding.payment_intent_id in finding.fingerprint
                stripe_client.v1.payment_intents.retrieve(finding.payment_intent_id)
            if finding.transfer_id:
                stripe_client.v1.transfers.retrieve(finding.transfer_id)
                assert finding.transfer_id in finding.explanation
    again = runner.invoke(args=["demo", "stripe-sync"])
    assert again.exit_code == 0 and "payment_intents=0" in again.output


def test_seeded_release_request_has_the_payload_the_console_builds(app):
    """Request #1 of the demo: its hash and payload are what approval re-checks."""
    runner = app.test_cli_runner()
    assert runner.invoke(args=["demo", "seed", "--orders", "20"]).exit_code == 0
    with app.app_context():
        s = db.session()
        approval = s.scalar(select(Approval).where(Approval.status == ApprovalStatus.PENDING))
        payouts = [s.get(SellerPayout, item.payout_id) for item in approval.items]
        assert approval.payload == payout_payload(payouts)
        assert approval.payload_hash == payload_hash(approval.payload)
        _, problems = changes_since_request(s, approval)
        assert problems == []


def test_demo_seed_is_refused_in_production(pg_url, idp, stripe_double):
    from console import create_app
    from tests.conftest import app_config

    prod = create_app(app_config(pg_url, idp, stripe_double, CONSOLE_ENV="production"))
    result = prod.test_cli_runner().invoke(args=["demo", "seed"])
    assert result.exit_code != 0
    assert "refused" in result.output
