"""Fixing stuck orders: verify at Stripe, refund, confirm stock, cancel, replay events."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from console import db
from console.audit.models import AuditEntry
from console.integrations.models import OutboxEvent
from console.inventory.models import InventoryItem, InventoryReservation, ReservationStatus
from console.orders.models import Order, OrderStatus
from console.payments.models import (
    MoneyMovement,
    MovementStatus,
    Payment,
    PaymentStatus,
    WebhookEvent,
    WebhookStatus,
)
from devtools.stripe_double import create_succeeded_payment_intent
from tests import stripe_events as se
from tests.actions.helpers import confirm_form, submit
from tests.factories import make_order


def stripe_attempts(app) -> int:
    """How many times the gateway tries a call before it gives up."""
    return app.config["SETTINGS"].stripe_max_attempts


def reload(app, external_id: str) -> Order:
    with app.app_context():
        return db.session().scalar(select(Order).where(Order.external_id == external_id))


def audit(app, action: str) -> list[AuditEntry]:
    with app.app_context():
        return list(
            db.session().scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
            )
        )


def stripe_refunds(stripe_client, pi_id: str) -> list:
    return list(stripe_client.v1.refunds.list({"payment_intent": pi_id, "limit": 100}).data)


@pytest.fixture
def stuck_paid(app, stripe_client):
    """A paid order whose webhook never arrived, with a succeeded PI at Stripe."""
    pi = create_succeeded_payment_intent(stripe_client, amount=4200, currency="eur")
    with app.app_context():
        s = db.session()
        order = make_order(s, status=OrderStatus.PAID, amount=4200, payment_intent_id=pi.id)
        s.commit()
        return order


@pytest.fixture
def captured(app, stripe_client):
    """A confirmed order with a verified, captured payment (refundable)."""
    pi = create_succeeded_payment_intent(stripe_client, amount=5000, currency="eur")
    with app.app_context():
        s = db.session()
        order = make_order(s, status=OrderStatus.CONFIRMED, amount=5000, payment_intent_id=pi.id)
        s.add(
            Payment(
                payment_intent_id=pi.id,
                order_id=order.id,
                amount=5000,
                currency="EUR",
                status=PaymentStatus.SUCCEEDED,
                verified_amount=5000,
                verified_currency="EUR",
            )
        )
        s.commit()
        return order


# ---------------------------------------------------------------- verify and mark paid


def test_verify_marks_paid_only_when_stripe_agrees(app, auth, client, stuck_paid, stripe):
    auth.as_role("support")
    page = client.get(f"/actions/orders:payment:verify/{stuck_paid.external_id}")
    assert "Only if it succeeded for exactly" in page.get_data(as_text=True)
    resp = submit(client, "orders:payment:verify", stuck_paid.external_id)
    assert resp.status_code == 303
    order = reload(app, stuck_paid.external_id)
    assert order.status == OrderStatus.CONFIRMED and order.webhook_processed_at is not None
    [entry] = audit(app, "orders:payment:verify")
    assert entry.outcome == "success"
    assert entry.details["extra"]["stripe_status"] == "succeeded"
    assert entry.details["before"]["status"] == "paid"
    assert entry.details["after"]["status"] == "confirmed"
    # Support cannot open audit entries; the order's own history says who, why
    # and what changed.
    history = client.get(f"/orders/{stuck_paid.external_id}").get_data(as_text=True)
    history = history[history.index('id="history-title"') :]
    assert "orders:payment:verify" in history and "Customer called, see ticket" in history
    assert re.search(r"<code>status</code>\s*paid → confirmed", history)


def test_verify_flags_amount_mismatch(app, auth, client, stripe_client, stripe):
    pi = create_succeeded_payment_intent(stripe_client, amount=3900, currency="eur")
    with app.app_context():
        s = db.session()
        order = make_order(s, status=OrderStatus.PAID, amount=4200, payment_intent_id=pi.id)
        s.commit()
    auth.as_role("support")
    resp = submit(client, "orders:payment:verify", order.external_id)
    assert resp.status_code == 303
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "possible fraud" in page
    reloaded = reload(app, order.external_id)
    assert reloaded.amount_mismatch and reloaded.status == OrderStatus.PAID


def test_verify_unknown_payment_intent_is_clear(app, auth, client, stripe):
    with app.app_context():
        s = db.session()
        order = make_order(s, status=OrderStatus.PAID, payment_intent_id="pi_not_at_stripe")
        s.commit()
    auth.as_role("support")
    resp = submit(client, "orders:payment:verify", order.external_id)
    assert resp.status_code == 422
    assert "Stripe does not know" in resp.get_data(as_text=True)
    assert reload(app, order.external_id).status == OrderStatus.PAID


@pytest.mark.parametrize(
    ("status", "delay", "expected", "text"),
    [
        (500, 0, 502, "did not answer"),
        (429, 0, 503, "rate limiting"),
        (500, 3, 502, "did not answer"),
    ],
)
def test_verify_survives_stripe_faults(
    app, auth, client, stuck_paid, stripe, status, delay, expected, text
):
    auth.as_role("support")
    form = confirm_form(client, "orders:payment:verify", stuck_paid.external_id)
    # Stripe keeps failing for longer than the gateway's retries (one fault per attempt).
    stripe.add_fault(
        path_prefix="/v1/payment_intents",
        method="GET",
        status=status,
        delay=delay,
        count=stripe_attempts(app),
    )
    resp = submit(client, "orders:payment:verify", stuck_paid.external_id, form=form)
    assert resp.status_code == expected
    body = resp.get_data(as_text=True)
    assert text in body and "Traceback" not in body
    assert reload(app, stuck_paid.external_id).status == OrderStatus.PAID
    assert audit(app, "orders:payment:verify")[-1].outcome == "failed"
    # Once Stripe answers again, a fresh try works.
    stripe.clear_faults()
    assert submit(client, "orders:payment:verify", stuck_paid.external_id).status_code == 303


# ---------------------------------------------------------------- refund


def test_refund_partial_then_rest(app, auth, client, captured, stripe, stripe_client):
    auth.as_role("admin")
    page = client.get(f"/actions/orders:order:refund/{captured.external_id}").get_data(as_text=True)
    assert "50.00 EUR" in page and 'value="50.00"' in page
    resp = submit(client, "orders:order:refund", captured.external_id, amount="12.50")
    assert resp.status_code == 303, resp.get_data(as_text=True)[:2000]
    order = reload(app, captured.external_id)
    assert order.amount_refunded == 1250 and order.status == OrderStatus.CONFIRMED
    resp = submit(client, "orders:order:refund", captured.external_id, amount="37.50")
    assert resp.status_code == 303
    order = reload(app, captured.external_id)
    assert order.amount_refunded == 5000 and order.status == OrderStatus.REFUNDED
    refunds = stripe_refunds(stripe_client, captured.payment_intent_id)
    assert sorted(r.amount for r in refunds) == [1250, 3750]
    entries = audit(app, "orders:order:refund")
    assert [e.outcome for e in entries] == ["success", "success"]
    assert entries[0].details["extra"]["refund_id"].startswith("re_")
    assert 'refund_operations_total{status="success"}' in client.get("/metrics").get_data(
        as_text=True
    )


def test_refund_cannot_exceed_what_was_captured(app, auth, client, captured, stripe, stripe_client):
    auth.as_role("admin")
    resp = submit(client, "orders:order:refund", captured.external_id, amount="50.01")
    assert resp.status_code == 422
    assert stripe_refunds(stripe_client, captured.payment_intent_id) == []


def test_refund_double_submit_refunds_once(app, auth, client, captured, stripe, stripe_client):
    auth.as_role("admin")
    form = confirm_form(client, "orders:order:refund", captured.external_id)
    first = submit(client, "orders:order:refund", captured.external_id, form=form, amount="10.00")
    second = submit(client, "orders:order:refund", captured.external_id, form=form, amount="10.00")
    assert first.status_code == second.status_code == 303
    assert len(stripe_refunds(stripe_client, captured.payment_intent_id)) == 1
    assert reload(app, captured.external_id).amount_refunded == 1000


def test_refund_is_denied_to_support(app, auth, client, captured, stripe, stripe_client):
    auth.as_role("support")
    resp = client.post(
        f"/actions/orders:order:refund/{captured.external_id}",
        data={
            "csrf_token": auth.csrf_token(),
            "idempotency_key": "crafted-refund-key-0001",
            "reason": "crafted post from a support user",
            "amount": "50.00",
        },
    )
    assert resp.status_code == 403
    assert audit(app, "orders:order:refund")[-1].outcome == "denied"
    assert stripe_refunds(stripe_client, captured.payment_intent_id) == []


def test_refund_rate_limited_refunds_nothing_and_a_retry_refunds_once(
    app, auth, client, captured, stripe, stripe_client
):
    auth.as_role("admin")
    stripe.add_fault(path_prefix="/v1/refunds", status=429, count=stripe_attempts(app))
    resp = submit(client, "orders:order:refund", captured.external_id, amount="20.00")
    assert resp.status_code == 503 and "rate limiting" in resp.get_data(as_text=True)
    assert stripe_refunds(stripe_client, captured.payment_intent_id) == []
    assert (
        submit(client, "orders:order:refund", captured.external_id, amount="20.00").status_code
        == 303
    )
    assert len(stripe_refunds(stripe_client, captured.payment_intent_id)) == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("after_effect", "delay"),
    [(False, 0.0), (True, 0.0), (True, 3.0)],
    ids=["500", "500-after", "timeout-after"],
)
def test_refund_with_unknown_outcome_stays_in_flight_and_resume_finishes_once(
    committed_app, idp, stripe, stripe_client, after_effect, delay
):
    from tests.conftest import AuthActions

    pi = create_succeeded_payment_intent(stripe_client, amount=3000, currency="eur")
    with committed_app.app_context():
        s = db.session()
        order = make_order(s, status=OrderStatus.CONFIRMED, amount=3000, payment_intent_id=pi.id)
        s.add(
            Payment(
                payment_intent_id=pi.id,
                order_id=order.id,
                amount=3000,
                currency="EUR",
                status=PaymentStatus.SUCCEEDED,
                verified_amount=3000,
            )
        )
        s.commit()
    client = committed_app.test_client()
    AuthActions(client, idp).as_role("admin")
    form = confirm_form(client, "orders:order:refund", order.external_id)
    # The first attempt may reach Stripe (after_effect); then Stripe stays unreachable for
    # every retry the gateway makes, so the outcome stays unknown.
    stripe.add_fault(path_prefix="/v1/refunds", status=500, after_effect=after_effect, delay=delay)
    stripe.add_fault(
        path_prefix="/v1/refunds", status=500, count=stripe_attempts(committed_app) - 1
    )
    resp = submit(client, "orders:order:refund", order.external_id, form=form, amount="30.00")
    assert resp.status_code == 502
    assert "Do not refund again" in resp.get_data(as_text=True)
    with committed_app.app_context():
        [movement] = db.session().scalars(select(MoneyMovement)).all()
        assert movement.status == MovementStatus.IN_FLIGHT
    # A second refund is refused while one is in flight.
    page = client.get(f"/actions/orders:order:refund/{order.external_id}").get_data(as_text=True)
    assert "still in flight" in page
    result = committed_app.test_cli_runner().invoke(args=["payouts", "resume"])
    assert result.exit_code == 0, result.output
    assert "acted=1" in result.output
    assert len(stripe_refunds(stripe_client, pi.id)) == 1
    with committed_app.app_context():
        movement = db.session().scalars(select(MoneyMovement)).one()
        assert movement.status == MovementStatus.SUCCEEDED
    assert reload(committed_app, order.external_id).status == OrderStatus.REFUNDED
    # Running resume again does nothing more.
    again = committed_app.test_cli_runner().invoke(args=["payouts", "resume"])
    assert "acted=0" in again.output
    assert len(stripe_refunds(stripe_client, pi.id)) == 1


# ---------------------------------------------------------------- reservations, cancel


def test_confirm_reservation(app, auth, client):
    with app.app_context():
        s = db.session()
        order = make_order(s, status=OrderStatus.CONFIRMED)
        s.add(InventoryItem(sku="SKU-R", stock_count=3))
        s.flush()
        s.add(
            InventoryReservation(external_id="res-r1", order_id=order.id, sku="SKU-R", quantity=1)
        )
        s.commit()
    auth.as_role("support")
    stale_form = confirm_form(client, "inventory:reservation:confirm", order.external_id)
    assert submit(client, "inventory:reservation:confirm", order.external_id).status_code == 303
    with app.app_context():
        res = db.session().scalar(select(InventoryReservation))
        assert res.status == ReservationStatus.CONFIRMED
    # Nothing left to confirm: the button is gone, and the old open form is stale.
    html = client.get(f"/orders/{order.external_id}").get_data(as_text=True)
    assert "/actions/inventory:reservation:confirm/" not in html
    resp = submit(
        client,
        "inventory:reservation:confirm",
        order.external_id,
        form=stale_form,
        reason="Second tab, opened before the first confirm",
    )
    assert resp.status_code == 409


def test_cancel_only_when_nothing_captured(app, auth, client, captured):
    auth.as_role("admin")
    with app.app_context():
        s = db.session()
        pending = make_order(s, status=OrderStatus.PENDING, payment_intent_id=None)
        s.commit()
    assert submit(client, "orders:order:cancel", pending.external_id).status_code == 303
    assert reload(app, pending.external_id).status == OrderStatus.CANCELLED
    with app.app_context():
        s = db.session()
        s.get(Order, captured.id).status = OrderStatus.PAID
        s.commit()
    crafted = {
        "csrf_token": auth.csrf_token(),
        "idempotency_key": "crafted-cancel-key-0001",
        "reason": "trying to cancel a captured order",
    }
    resp = submit(client, "orders:order:cancel", captured.external_id, form=crafted)
    assert resp.status_code == 409
    assert "refund it instead" in resp.get_data(as_text=True)


# ---------------------------------------------------------------- replay


@pytest.fixture
def failed_event(app, client, stuck_paid):
    with app.app_context():
        s = db.session()
        s.get(Order, stuck_paid.id).payment_intent_id = None  # the handler cannot find it yet
        s.commit()
    evt = se.event(
        "payment_intent.succeeded", se.payment_intent(stuck_paid.payment_intent_id, 4200)
    )
    se.post_processed(client, app, evt)  # the worker finds no order yet
    with app.app_context():
        s = db.session()
        stored = s.scalar(select(WebhookEvent).where(WebhookEvent.event_id == evt["id"]))
        assert stored.status == WebhookStatus.FAILED
        s.get(Order, stuck_paid.id).payment_intent_id = evt["data"]["object"]["id"]  # fixed
        s.commit()
    return evt["id"]


def test_replay_dry_run_then_replay(app, auth, client, stuck_paid, failed_event):
    auth.as_role("support")
    page = client.get(f"/actions/webhooks:event:replay/{failed_event}").get_data(as_text=True)
    assert "Dry run" in page and "paid -&gt; confirmed" in page
    # In support's terms: the new payment's amount in its currency, its order by
    # the id the shop uses; never minor units or the console's row ids.
    assert "amount: — -&gt; 42.00 EUR" in page
    assert f"order: — -&gt; {stuck_paid.external_id}" in page
    assert "4200" not in page and f"order id: — -&gt; {stuck_paid.id}" not in page
    assert reload(app, stuck_paid.external_id).status == OrderStatus.PAID  # preview changed nothing
    stale_form = confirm_form(client, "webhooks:event:replay", failed_event)
    with app.app_context():
        assert db.session().scalars(select(OutboxEvent)).all() == []  # nor did the preview
    resp = submit(client, "webhooks:event:replay", failed_event)
    assert resp.status_code == 303
    assert reload(app, stuck_paid.external_id).status == OrderStatus.CONFIRMED
    # The shop hears of the order the replay confirmed, after the replay's audit entry.
    with app.app_context():
        s = db.session()
        [event] = s.scalars(select(OutboxEvent)).all()
        entry = audit(app, "webhooks:event:replay")[-1]
    assert (event.type, event.record_id) == ("order.stripe_event_replayed", stuck_paid.external_id)
    assert event.data["record"]["status"] == "confirmed" and event.audit_seq == entry.seq
    with app.app_context():
        stored = db.session().scalar(
            select(WebhookEvent).where(WebhookEvent.event_id == failed_event)
        )
        assert stored.status == WebhookStatus.PROCESSED and stored.attempts == 2
    again = submit(
        client,
        "webhooks:event:replay",
        failed_event,
        form=stale_form,
        reason="Second tab, opened before the first replay",
    )
    assert again.status_code == 409
    assert "already processed" in again.get_data(as_text=True)


def test_replay_cli_dry_run_and_run(app, stuck_paid, failed_event):
    runner = app.test_cli_runner()
    dry = runner.invoke(args=["webhooks", "replay", failed_event, "--dry-run"])
    assert dry.exit_code == 0 and "status: paid -> confirmed" in dry.output
    assert reload(app, stuck_paid.external_id).status == OrderStatus.PAID
    real = runner.invoke(args=["webhooks", "replay", failed_event])
    assert real.exit_code == 0 and "processed" in real.output
    assert reload(app, stuck_paid.external_id).status == OrderStatus.CONFIRMED
    entry = audit(app, "webhooks:event:replay")[-1]
    assert entry.actor_sub.startswith("cli:")
    # As from the Replay button: the shop hears of the order, after the entry.
    with app.app_context():
        [event] = db.session().scalars(select(OutboxEvent)).all()
    assert (event.type, event.record_id) == ("order.stripe_event_replayed", stuck_paid.external_id)
    assert event.data["record"]["status"] == "confirmed" and event.audit_seq == entry.seq
    assert event.actor["sub"] == entry.actor_sub
    refused = runner.invoke(args=["webhooks", "replay", failed_event])
    assert refused.exit_code != 0 and "already processed" in refused.output


def test_refunded_mismatch_order_leaves_the_stuck_queue(app, auth, client, stripe_client, stripe):
    pi = create_succeeded_payment_intent(stripe_client, amount=1290, currency="eur")
    with app.app_context():
        s = db.session()
        order = make_order(
            s, status=OrderStatus.PAID, amount=12900, payment_intent_id=pi.id, amount_mismatch=True
        )
        s.add(
            Payment(
                payment_intent_id=pi.id,
                order_id=order.id,
                amount=1290,
                currency="EUR",
                status=PaymentStatus.SUCCEEDED,
                verified_amount=1290,
                verified_currency="EUR",
            )
        )
        s.commit()
    auth.as_role("admin")
    assert order.external_id in client.get("/orders/stuck").get_data(as_text=True)
    page = client.get(f"/actions/orders:order:refund/{order.external_id}").get_data(as_text=True)
    assert "12.90 EUR" in page  # bounded by what Stripe captured, not the order amount
    assert (
        submit(client, "orders:order:refund", order.external_id, amount="12.90").status_code == 303
    )
    assert reload(app, order.external_id).status == OrderStatus.REFUNDED
    client.get("/")  # consume the flash that names the order
    assert f"row-order-{order.external_id}" not in client.get("/orders/stuck").get_data(
        as_text=True
    )


def test_htmx_verify_swaps_the_row_with_its_new_state(app, auth, client, stuck_paid, stripe):
    auth.as_role("support")
    resp = submit(client, "orders:payment:verify", stuck_paid.external_id, htmx=True)
    assert resp.status_code == 200
    assert resp.headers["HX-Retarget"] == f"#row-order-{stuck_paid.external_id}"
    assert resp.headers["HX-Reswap"] == "outerHTML"
    html = resp.get_data(as_text=True)
    assert f'id="row-order-{stuck_paid.external_id}"' in html and "Resolved" in html
    assert 'hx-swap-oob="true"' in html and "Verified at Stripe" in html
