"""Webhooks out of order leave the final state equal to Stripe's (issue 12, reliability plan).

Stripe does not guarantee the order of events, and redelivers some. For real
payments at the Stripe double (a declined attempt, success, one or two
refunds) every permutation of their events is delivered, each with one
random extra redelivery, and the console's payment and order are compared
with what Stripe says at the end. Figure: every permutation ends equal to
Stripe (30 of 30 by default; `RELIABILITY_RUNS` scales the random redeliveries).
"""

from __future__ import annotations

import itertools
import os
import random

import pytest
from sqlalchemy import select

from console import db
from console.orders.models import Order, OrderStatus
from console.payments.models import Payment, PaymentStatus
from devtools.stripe_double import create_succeeded_payment_intent
from tests import stripe_events as se
from tests.factories import make_order

SEED = int(os.environ.get("RELIABILITY_SEED", "12"))


def stripe_events_for(stripe_client, order_ref: str, refunds: list[int]) -> list[dict]:
    """The events Stripe sends for one payment, each built from the object at that moment."""
    pi = create_succeeded_payment_intent(
        stripe_client, amount=3000, currency="eur", metadata={"order_id": order_ref}
    ).to_dict()
    declined = {
        **pi,
        "status": "requires_payment_method",
        "amount_received": 0,
        "latest_charge": None,
        "last_payment_error": {"code": "card_declined", "message": "Your card was declined."},
    }
    events = [
        se.event("payment_intent.payment_failed", declined),
        se.event("payment_intent.succeeded", pi),
    ]
    for amount in refunds:
        stripe_client.v1.refunds.create({"payment_intent": pi["id"], "amount": amount})
        charge = stripe_client.v1.payment_intents.retrieve(
            pi["id"], {"expand": ["latest_charge"]}
        ).to_dict()["latest_charge"]
        charge["metadata"] = {"order_id": order_ref}
        events.append(se.event("charge.refunded", charge))
    return events


def stripe_truth(stripe_client, pi_id: str) -> tuple[PaymentStatus, int, OrderStatus]:
    """What Stripe says now, in the console's terms."""
    pi = stripe_client.v1.payment_intents.retrieve(pi_id, {"expand": ["latest_charge"]}).to_dict()
    charge = pi["latest_charge"]
    refunded = int(charge["amount_refunded"])
    if refunded >= charge["amount"]:
        return PaymentStatus.REFUNDED, refunded, OrderStatus.REFUNDED
    if refunded:
        return PaymentStatus.PARTIALLY_REFUNDED, refunded, OrderStatus.CONFIRMED
    return PaymentStatus.SUCCEEDED, 0, OrderStatus.CONFIRMED


CASES = [
    *(("full", p) for p in itertools.permutations(range(4))),
    *(("partial", p) for p in itertools.permutations(range(3))),
]


@pytest.mark.slow
def test_every_order_of_events_ends_equal_to_stripe(app, client, stripe, stripe_client):
    rng = random.Random(SEED)
    extra = max(1, int(os.environ.get("RELIABILITY_RUNS", "1000")) // 1000)
    mismatches = []
    for n, (kind, order) in enumerate(CASES):
        ref = f"ORD-WH-{n:03d}"
        events = stripe_events_for(stripe_client, ref, [1000, 2000] if kind == "full" else [1000])
        pi_id = events[1]["data"]["object"]["id"]
        with app.app_context():
            s = db.session()
            make_order(s, external_id=ref, amount=3000, currency="EUR", payment_intent_id=pi_id)
            s.commit()
        deliveries = [events[i] for i in order]
        for _ in range(extra):  # Stripe redelivers some events, at any time
            deliveries.insert(rng.randrange(len(deliveries) + 1), rng.choice(events))
        for evt in deliveries:  # each applied by the worker's function as it arrives
            resp = se.post_processed(client, app, evt)
            assert resp.status_code == 200, (kind, order, resp.get_json())
        with app.app_context():
            s = db.session()
            payment = s.scalar(select(Payment).where(Payment.payment_intent_id == pi_id))
            o = s.scalar(select(Order).where(Order.external_id == ref))
            ours = (payment.status, payment.amount_refunded, o.status)
            assert o.amount_refunded == payment.amount_refunded
        truth = stripe_truth(stripe_client, pi_id)
        if ours != truth:
            mismatches.append((kind, order, ours, truth))
    assert mismatches == [], f"{len(mismatches)} of {len(CASES)} orders differ from Stripe"
