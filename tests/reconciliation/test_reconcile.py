"""Reconciliation finds every kind of difference, and nothing else."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import select

from console import db
from console.orders.models import OrderStatus
from console.payments.models import WebhookEvent, WebhookStatus
from console.reconciliation.models import (
    FindingStatus,
    FindingType,
    ReconciliationFinding,
    ReconciliationRun,
)
from devtools.stripe_double import create_succeeded_payment_intent
from tests.factories import make_order, make_payout


def findings(app) -> dict[str, ReconciliationFinding]:
    with app.app_context():
        return {f.fingerprint: f for f in db.session().scalars(select(ReconciliationFinding))}


def run(app, *args: str):
    result = app.test_cli_runner().invoke(args=["reconcile", "run", *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def world(app, stripe, stripe_client):
    """Healthy orders plus one case of each difference, on a clean Stripe double."""
    stripe.reset()
    cases: dict[str, str] = {}
    with app.app_context():
        s = db.session()
        for i in range(12):  # healthy: paid at Stripe, confirmed here, event received
            pi = create_succeeded_payment_intent(stripe_client, amount=1000 + i, currency="eur")
            make_order(s, status=OrderStatus.CONFIRMED, amount=1000 + i, payment_intent_id=pi.id)
            s.add(
                WebhookEvent(
                    event_id=f"evt_ok_{i}",
                    type="payment_intent.succeeded",
                    object_id=pi.id,
                    raw_body="{}",
                    status=WebhookStatus.PROCESSED,
                )
            )
        orphan = create_succeeded_payment_intent(
            stripe_client, amount=4200, currency="eur", metadata={"order_id": "ORD-LOST"}
        )
        cases["orphan"] = orphan.id
        mismatch = create_succeeded_payment_intent(stripe_client, amount=1290, currency="eur")
        make_order(s, status=OrderStatus.CONFIRMED, amount=12900, payment_intent_id=mismatch.id)
        cases["mismatch"] = mismatch.id
        missing = make_order(s, status=OrderStatus.CONFIRMED, payment_intent_id="pi_not_at_stripe")
        cases["missing"] = missing.payment_intent_id
        refunded = create_succeeded_payment_intent(stripe_client, amount=5000, currency="eur")
        stripe_client.v1.refunds.create({"payment_intent": refunded.id, "amount": 500})
        make_order(s, status=OrderStatus.CONFIRMED, amount=5000, payment_intent_id=refunded.id)
        cases["refund"] = refunded.id
        silent = create_succeeded_payment_intent(stripe_client, amount=777, currency="eur")
        make_order(s, status=OrderStatus.PAID, amount=777, payment_intent_id=silent.id)
        cases["event"] = silent.id
        payout = make_payout(s)
        from console.orders.models import Order

        paid = create_succeeded_payment_intent(stripe_client, amount=2500, currency="eur")
        market_order = s.get(Order, payout.order_id)
        market_order.payment_intent_id, market_order.amount = paid.id, 2500
        s.add(
            WebhookEvent(
                event_id="evt_mkt",
                type="payment_intent.succeeded",
                object_id=paid.id,
                raw_body="{}",
                status=WebhookStatus.PROCESSED,
            )
        )
        s.commit()
        stripe_client.v1.accounts.create({"type": "express", "id": payout.destination_account})
        transfer = stripe_client.v1.transfers.create(
            {
                "amount": payout.amount,
                "currency": "eur",
                "destination": payout.destination_account,
                "metadata": {"payout_id": payout.external_id},
            }
        )
        cases["transfer"] = transfer.id
    return cases


def test_every_difference_is_found_with_its_severity_and_nothing_else(app, world, stripe):
    stripe.clear_requests_log()
    output = run(app)
    found = findings(app)
    expected = {
        f"stripe_paid_no_order:{world['orphan']}": "critical",
        f"amount_mismatch:{world['mismatch']}": "critical",
        f"order_paid_no_stripe:{world['missing']}": "high",
        f"refund_not_reflected:{world['refund']}": "high",
        f"event_not_received:{world['event']}": "warning",
        f"transfer_order_not_completed:{world['transfer']}": "medium",
    }
    assert {k: f.severity.value for k, f in found.items()} == expected
    orphan = found[f"stripe_paid_no_order:{world['orphan']}"]
    assert (
        "succeeded for 42.00 EUR" in orphan.explanation
        and "no order references it" in orphan.explanation
    )
    # List calls only: ceil(N/100) per list plus a constant, never one per order.
    objects = 18 + 1
    assert stripe.count_requests("GET") <= math.ceil(objects / 100) * 2 + 2
    assert stripe.count_requests("GET", "/v1/payment_intents/") == 0
    assert "stripe calls=2" in output


def test_a_second_run_updates_and_auto_closes(app, world, stripe):
    run(app)
    first = findings(app)
    with app.app_context():
        s = db.session()
        from console.orders.models import Order

        order = s.scalar(select(Order).where(Order.payment_intent_id == world["refund"]))
        order.amount_refunded = 500  # the refund is now recorded here
        s.commit()
    run(app)
    second = findings(app)
    assert set(second) == set(first)  # no duplicates
    closed = second[f"refund_not_reflected:{world['refund']}"]
    assert closed.status == FindingStatus.AUTO_CLOSED and "not seen by run" in closed.close_reason
    still = second[f"amount_mismatch:{world['mismatch']}"]
    assert still.status == FindingStatus.OPEN and still.last_seen_run_id != still.first_seen_run_id


def test_filters_narrow_the_run_and_do_not_auto_close(app, world):
    run(app)
    output = run(app, "--payment-intent", world["mismatch"])
    assert "new=0 seen again=1 auto-closed=0" in output
    assert all(f.status == FindingStatus.OPEN for f in findings(app).values())


def test_rate_limit_mid_run_loses_and_duplicates_nothing(app, world, stripe):
    stripe.add_fault(path_prefix="/v1/payment_intents", method="GET", status=429, count=2)
    run(app)
    types = sorted(f.type.value for f in findings(app).values())
    assert types == sorted(
        t.value
        for t in (
            FindingType.STRIPE_PAID_NO_ORDER,
            FindingType.AMOUNT_MISMATCH,
            FindingType.ORDER_PAID_NO_STRIPE,
            FindingType.REFUND_NOT_REFLECTED,
            FindingType.EVENT_NOT_RECEIVED,
            FindingType.TRANSFER_ORDER_NOT_COMPLETED,
        )
    )
    with app.app_context():
        last = db.session().scalar(select(ReconciliationRun).order_by(ReconciliationRun.id.desc()))
        assert last.status.value == "succeeded" and last.stripe_calls >= 4


def test_fixes_change_the_right_records_and_the_next_run_agrees(app, auth, client, world):
    from console.orders.models import Order
    from tests.actions.helpers import submit

    run(app)
    auth.as_role("admin")
    orphan = f"stripe_paid_no_order:{world['orphan']}"
    assert (
        submit(
            client,
            "reconciliation:finding:create_order",
            orphan,
            reason="Webhook lost in the outage",
        ).status_code
        == 303
    )
    transfer = f"transfer_order_not_completed:{world['transfer']}"
    assert (
        submit(
            client,
            "reconciliation:finding:mark_completed",
            transfer,
            reason="Transfer verified in Stripe",
        ).status_code
        == 303
    )
    missing = f"order_paid_no_stripe:{world['missing']}"
    assert (
        submit(
            client, "reconciliation:finding:mark_cancelled", missing, reason="No payment at Stripe"
        ).status_code
        == 303
    )
    mismatch = f"amount_mismatch:{world['mismatch']}"
    assert (
        submit(
            client, "reconciliation:finding:dismiss", mismatch, reason="Refunded by finance, FIN-12"
        ).status_code
        == 303
    )
    with app.app_context():
        s = db.session()
        created = s.scalar(select(Order).where(Order.payment_intent_id == world["orphan"]))
        assert created.external_id == "ORD-LOST" and created.amount == 4200
        assert created.status == OrderStatus.CONFIRMED
    found = findings(app)
    assert (
        found[orphan].status == FindingStatus.FIXED and found[orphan].closed_by_sub == "sub-admin-1"
    )
    assert found[mismatch].status == FindingStatus.DISMISSED
    page = client.get(f"/reconciliation/findings/{orphan}").get_data(as_text=True)
    assert "reconciliation:finding:create_order" in page  # its history links the audit entry
    output = run(app)
    assert "new=0" in output  # the fixed ones are not found again
    assert (
        findings(app)[f"transfer_order_not_completed:{world['transfer']}"].status
        == FindingStatus.FIXED
    )


@pytest.mark.slow
def test_start_a_run_from_the_page_runs_in_the_background(committed_app, idp, stripe, start_worker):
    """The page enqueues the run; a worker process executes it."""
    import time

    from tests.actions.helpers import submit
    from tests.conftest import AuthActions

    stripe.reset()
    client = committed_app.test_client()
    AuthActions(client, idp).as_role("admin")
    assert (
        submit(
            client, "reconciliation:run:start", "stripe", reason="After the webhook outage"
        ).status_code
        == 303
    )
    start_worker()
    deadline = time.monotonic() + 20
    status = None
    while time.monotonic() < deadline:
        with committed_app.app_context():
            last = db.session().scalar(
                select(ReconciliationRun).order_by(ReconciliationRun.id.desc())
            )
            status = last.status.value
        if status != "running":
            break
        time.sleep(0.2)
    assert status == "succeeded"
    page = client.get("/reconciliation").get_data(as_text=True)
    assert "every 1s" not in page and "succeeded" in page


def test_attach_intent_and_apply_missed_event(app, auth, client, world, stripe_client):
    from console.orders.models import Order
    from tests.actions.helpers import submit

    run(app)
    missing = f"order_paid_no_stripe:{world['missing']}"
    with app.app_context():
        order = db.session().scalar(
            select(Order).where(Order.payment_intent_id == world["missing"])
        )
    right = create_succeeded_payment_intent(stripe_client, amount=order.amount, currency="eur")
    wrong = create_succeeded_payment_intent(stripe_client, amount=order.amount + 1, currency="eur")
    auth.as_role("admin")
    refused = submit(
        client, "reconciliation:finding:attach_intent", missing, payment_intent=wrong.id
    )
    assert refused.status_code == 422 and "Not attached" in refused.get_data(as_text=True)
    ok = submit(client, "reconciliation:finding:attach_intent", missing, payment_intent=right.id)
    assert ok.status_code == 303
    with app.app_context():
        assert db.session().get(Order, order.id).payment_intent_id == right.id
    auth.as_role("support")
    missed = f"event_not_received:{world['event']}"
    assert submit(client, "reconciliation:finding:apply_missed_event", missed).status_code == 303
    with app.app_context():
        confirmed = db.session().scalar(
            select(Order).where(Order.payment_intent_id == world["event"])
        )
        assert confirmed.status == OrderStatus.CONFIRMED
    assert findings(app)[missed].status == FindingStatus.FIXED


@pytest.mark.slow
def test_no_false_findings_on_a_clean_data_set(app, stripe, stripe_client):
    stripe.reset()
    with app.app_context():
        s = db.session()
        for i in range(1500):
            pi = create_succeeded_payment_intent(stripe_client, amount=500 + i, currency="eur")
            make_order(s, status=OrderStatus.COMPLETED, amount=500 + i, payment_intent_id=pi.id)
        s.commit()
    stripe.clear_requests_log()
    output = run(app)
    assert "new=0" in output, output
    assert findings(app) == {}
    # 1,500 intents: 15 pages, and one page of transfers. On a loaded machine the
    # double can take longer than the client's timeout to serve a page of 100, and the
    # gateway asks for that page again at once: that retry is not another call.
    assert stripe.count_calls("GET") <= math.ceil(1500 / 100) + 2


@pytest.mark.slow
def test_two_runs_at_once_do_not_duplicate_findings(committed_app, stripe, stripe_client):
    import threading

    stripe.reset()
    for i in range(5):
        create_succeeded_payment_intent(stripe_client, amount=100 + i, currency="eur")
    barrier = threading.Barrier(2)
    outputs: list[str] = []

    def go() -> None:
        barrier.wait()
        # With a window: a run of its own each (unfiltered, the second would skip).
        args = ["reconcile", "run", "--since", "2026-01-01"]
        outputs.append(committed_app.test_cli_runner().invoke(args=args).output)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    # CliRunner swaps sys.stdout process-wide, so read the runs from the database.
    # The cron lock lets one copy run at a time: the other skipped, or ran after it.
    with committed_app.app_context():
        runs = db.session().scalars(select(ReconciliationRun)).all()
    assert [r.status.value for r in runs] in (["succeeded"], ["succeeded", "succeeded"])
    found = findings(committed_app)
    assert len(found) == 5 and all(
        f.type == FindingType.STRIPE_PAID_NO_ORDER for f in found.values()
    )


def test_mark_refunded(app, auth, client, world):
    from console.orders.models import Order
    from tests.actions.helpers import submit

    run(app)
    auth.as_role("admin")
    missing = f"order_paid_no_stripe:{world['missing']}"
    assert (
        submit(
            client,
            "reconciliation:finding:mark_refunded",
            missing,
            reason="Refunded by bank transfer",
        ).status_code
        == 303
    )
    with app.app_context():
        order = db.session().scalar(
            select(Order).where(Order.payment_intent_id == world["missing"])
        )
        assert order.status == OrderStatus.REFUNDED


def test_a_run_for_one_payment_intent_asks_stripe_for_it_alone(app, world, stripe, stripe_client):
    """Figure: with 250 more intents in the account, one PaymentIntent costs <= 5 calls."""
    for i in range(250):  # a bigger account: listing it would take 3+ pages
        create_succeeded_payment_intent(stripe_client, amount=300 + i, currency="eur")
    stripe.clear_requests_log()
    output = run(app, "--payment-intent", world["mismatch"])
    log = stripe.requests_log()
    assert len(log) <= 5, log
    assert [r["path"] for r in log if r["path"] == "/v1/payment_intents"] == []  # no listing
    assert any(r["path"] == f"/v1/payment_intents/{world['mismatch']}" for r in log)
    assert f"amount_mismatch:{world['mismatch']}" in findings(app)
    assert f"stripe calls={len(log)}" in output


def test_a_run_for_an_order_finds_what_stripe_holds_for_it_by_name(app, world, stripe):
    """Figure: an order id finds 'Stripe paid, no order' through the Search API, <= 5 calls."""
    stripe.clear_requests_log()
    run(app, "--order-id", "ORD-LOST")  # no such order here; Stripe's metadata names it
    log = stripe.requests_log()
    assert len(log) <= 5, log
    assert any(r["path"] == "/v1/payment_intents/search" for r in log)
    assert f"stripe_paid_no_order:{world['orphan']}" in findings(app)


def test_a_run_for_an_order_sees_its_transfer_and_a_missing_intent(app, world, stripe):
    """Figure: the order's transfer group and its PaymentIntent, asked for by name."""
    with app.app_context():
        from console.orders.models import Order

        missing = db.session().scalar(
            select(Order.external_id).where(Order.payment_intent_id == world["missing"])
        )
    stripe.clear_requests_log()
    run(app, "--order-id", missing)
    assert stripe.count_requests() <= 5
    assert f"order_paid_no_stripe:{world['missing']}" in findings(app)
