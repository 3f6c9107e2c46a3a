"""`demo stripe-sync`: create at Stripe what the seeded cases refer to.

Test mode or the local double only (a live key is refused). For every seeded
order that has (or should have) a payment at Stripe, a succeeded
PaymentIntent is created for the amount Stripe is meant to have received,
and the local records are pointed at its real id; sellers get connected
accounts. Idempotent: records already pointing at a real id are skipped.
"""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from console.db import utcnow
from console.orders.models import Order
from console.payments.gateway import GatewayError, StripeGateway
from console.payments.models import Payment, WebhookEvent
from console.payouts.models import Seller, SellerPayout
from console.reconciliation.models import ReconciliationFinding

# Seeded orders whose payment must exist at Stripe, and what Stripe received.
SYNCED_ORDERS = {
    "ORD-DEMO-0001": None,  # the order amount
    "ORD-DEMO-0002": None,
    "ORD-DEMO-0003": 1290,  # Stripe received a tenth: the amount-mismatch case
    "ORD-DEMO-0004": None,
    "ORD-DEMO-0005": None,
    "ORD-DEMO-0006": None,
    "ORD-DEMO-0008": None,
    "ORD-DEMO-0013": 990,  # the second amount mismatch (stuck orders' own refund case)
}
ORPHAN = "pi_demo_orphan_0010"


def _repoint(s: Session, old: str, new: str) -> None:
    """Point every local record (findings included) at the real PaymentIntent id."""
    s.execute(update(Order).where(Order.payment_intent_id == old).values(payment_intent_id=new))
    s.execute(update(Payment).where(Payment.payment_intent_id == old).values(payment_intent_id=new))
    for finding in s.scalars(
        select(ReconciliationFinding).where(ReconciliationFinding.payment_intent_id == old)
    ):
        finding.payment_intent_id = new
        finding.fingerprint = finding.fingerprint.replace(old, new)
        finding.explanation = finding.explanation.replace(old, new)
    for event in s.scalars(select(WebhookEvent).where(WebhookEvent.object_id == old)):
        body = json.loads(event.raw_body)
        body["data"]["object"]["id"] = new
        event.raw_body = json.dumps(body, separators=(",", ":"))
        event.object_id = new


def stripe_sync(s: Session, gw: StripeGateway) -> dict[str, int]:
    created = repointed = accounts = 0
    for external_id, received in SYNCED_ORDERS.items():
        order = s.scalar(select(Order).where(Order.external_id == external_id))
        if order is None or not (order.payment_intent_id or "").startswith("pi_demo_"):
            continue
        pi = gw.create_test_payment(
            amount=received or order.amount,
            currency=order.currency,
            metadata={"order_id": order.external_id},
        )
        created += 1
        _repoint(s, order.payment_intent_id or "", pi["id"])
        repointed += 1
    # Healthy orders of the last month get their real PaymentIntents too, so a
    # reconciliation run in the demo finds the seeded cases and nothing else.
    recent = utcnow() - timedelta(days=31)
    for order in s.scalars(
        select(Order).where(
            Order.created_at >= recent,
            Order.payment_intent_id.like("pi_demo_0%")
            | Order.payment_intent_id.like("pi_demo_mkt_%"),
        )
    ).all():
        pi = gw.create_test_payment(
            amount=order.amount, currency=order.currency, metadata={"order_id": order.external_id}
        )
        created += 1
        _repoint(s, order.payment_intent_id or "", pi["id"])
    orphan = s.scalar(select(Payment).where(Payment.payment_intent_id == ORPHAN))
    if orphan is not None:
        pi = gw.create_test_payment(
            amount=orphan.amount,
            currency=orphan.currency,
            metadata={"order_id": "ORD-DEMO-0010", "listing_id": "LST-0010"},
        )
        created += 1
        _repoint(s, ORPHAN, pi["id"])
    for seller in s.scalars(select(Seller).where(Seller.stripe_account_id.like("acct_demo_%"))):
        try:
            gw.retrieve_account(seller.stripe_account_id)
            continue  # already there
        except GatewayError as exc:
            if exc.kind != "not_found":
                raise
        account = gw.create_connected_account(
            email=seller.email, account_id=seller.stripe_account_id
        )
        accounts += 1
        if account["id"] != seller.stripe_account_id:  # real test mode picks its own ids
            s.execute(
                update(SellerPayout)
                .where(SellerPayout.destination_account == seller.stripe_account_id)
                .values(destination_account=account["id"])
            )
            seller.stripe_account_id = account["id"]
    # Released payouts get their transfers, so reconciliation sees them.
    transfers = 0
    for payout in s.scalars(
        select(SellerPayout).where(SellerPayout.stripe_transfer_id.like("tr_demo_%"))
    ).all():
        transfer = gw.create_transfer(
            amount=payout.amount,
            currency=payout.currency,
            destination=payout.destination_account,
            transfer_group=f"order-{payout.order_id}",
            # Keyed by what is sent, not only by the payout: a sync run twice sends the
            # same transfer once, and a new seed (other amounts for the same payout ids,
            # against the same Stripe account) gets its own instead of Stripe refusing
            # a key reused with other parameters.
            idempotency_key=(
                f"demo-transfer-{payout.external_id}-{payout.amount}-{payout.currency}-"
                f"{payout.destination_account}-{payout.order_id}"
            ),
            metadata={"payout_id": payout.external_id, "order_id": str(payout.order_id)},
        )
        for finding in s.scalars(
            select(ReconciliationFinding).where(
                ReconciliationFinding.transfer_id == payout.stripe_transfer_id
            )
        ):
            finding.explanation = finding.explanation.replace(
                payout.stripe_transfer_id or "", str(transfer["id"])
            )
            finding.transfer_id = str(transfer["id"])
        payout.stripe_transfer_id = str(transfer["id"])
        transfers += 1
    s.commit()
    return {
        "payment_intents": created,
        "repointed_orders": repointed,
        "accounts": accounts,
        "transfers": transfers,
    }
