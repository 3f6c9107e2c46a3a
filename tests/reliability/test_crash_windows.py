"""Crash windows: SIGKILL after Stripe answered and before our commit (issue 12, reliability plan).

The console process is stopped exactly in the window: the audit chain head
is held (as the owner), so the action, which appends its entry last, waits
there with Stripe's answer in hand; once the Stripe double has logged its
successful answer and the process is seen waiting, the whole process group
gets SIGKILL. Then `payouts resume` runs as a separate process. Figure:
exactly one Stripe object and a consistent record, for a refund and for a
transfer.
"""

from __future__ import annotations

import threading

import pytest
import requests
from sqlalchemy import select

from console import db
from console.audit.models import AuditEntry
from console.dbroles import role_of
from console.orders.models import Order, OrderStatus
from console.payments.models import MoneyMovement, MovementStatus, Payment, PaymentStatus
from console.payouts.models import PayoutStatus, SellerPayout
from devtools.stripe_double import create_succeeded_payment_intent
from tests.factories import make_order, make_payout
from tests.reliability.conftest import (
    HeadLock,
    browser_login,
    confirm_fields,
    run_cli,
    spawn_cli,
    wait_for,
    waiting_on_a_lock,
)

pytestmark = pytest.mark.slow


def answered(stripe, path: str) -> bool:
    return any(
        r["method"] == "POST" and r["path"] == path and r["status"] == 200
        for r in stripe.requests_log()
    )


def movements(app) -> list[MoneyMovement]:
    with app.app_context():
        return list(db.session().scalars(select(MoneyMovement)))


def success_entries(app, action: str, target: str) -> list[AuditEntry]:
    with app.app_context():
        return list(
            db.session().scalars(
                select(AuditEntry).where(
                    AuditEntry.action == action,
                    AuditEntry.target_id == target,
                    AuditEntry.outcome == "success",
                )
            )
        )


def test_refund_killed_between_stripe_and_commit_is_finished_once(
    committed_app,
    console_process,
    stripe,
    stripe_client,
    pg_url,
    pg_owner_url,
    pg_superuser_url,
    idp,
    stripe_double,
):
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
        ref = order.external_id
    server = console_process()
    admin = browser_login(server.url, "admin")
    form = confirm_fields(admin, server.url, "orders:order:refund", ref)
    form.update(reason="Customer asked for a refund", amount="30.00")
    stripe.clear_requests_log()

    outcome: dict[str, object] = {}

    def press() -> None:
        try:
            outcome["status"] = admin.post(
                f"{server.url}/actions/orders:order:refund/{ref}", data=form, timeout=60
            ).status_code
        except requests.RequestException as exc:
            outcome["error"] = type(exc).__name__

    with HeadLock(pg_owner_url):
        click = threading.Thread(target=press)
        click.start()
        wait_for(lambda: answered(stripe, "/v1/refunds"), what="Stripe's answer")
        wait_for(
            lambda: waiting_on_a_lock(pg_superuser_url, str(role_of(pg_url))),
            what="the process waiting before its commit",
        )
        server.kill()
    click.join(30)
    assert "error" in outcome  # the connection died with the process: no answer

    # Stripe refunded; we never committed: the attempt is in flight, nothing else changed.
    assert len(stripe_client.v1.refunds.list({"payment_intent": pi.id}).data) == 1
    [movement] = movements(committed_app)
    assert movement.status == MovementStatus.IN_FLIGHT
    with committed_app.app_context():
        o = db.session().scalar(select(Order).where(Order.external_id == ref))
        assert o.amount_refunded == 0 and o.status == OrderStatus.CONFIRMED
    assert success_entries(committed_app, "orders:order:refund", ref) == []

    result = run_cli(pg_url, idp, stripe_double.url, "payouts", "resume")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "acted=1" in result.stdout

    refunds = stripe_client.v1.refunds.list({"payment_intent": pi.id}).data
    assert len(refunds) == 1 and refunds[0].amount == 3000
    [movement] = movements(committed_app)
    assert (
        movement.status == MovementStatus.SUCCEEDED and movement.stripe_object_id == refunds[0].id
    )
    with committed_app.app_context():
        s = db.session()
        o = s.scalar(select(Order).where(Order.external_id == ref))
        p = s.scalar(select(Payment).where(Payment.payment_intent_id == pi.id))
        assert (o.status, o.amount_refunded) == (OrderStatus.REFUNDED, 3000)
        assert (p.status, p.amount_refunded) == (PaymentStatus.REFUNDED, 3000)
    [entry] = success_entries(committed_app, "orders:order:refund", ref)
    assert entry.details["extra"]["refund_id"] == refunds[0].id
    # A second resume finds nothing to do.
    again = run_cli(pg_url, idp, stripe_double.url, "payouts", "resume")
    assert "acted=0" in again.stdout
    assert len(stripe_client.v1.refunds.list({"payment_intent": pi.id}).data) == 1


def test_transfer_killed_between_stripe_and_commit_is_finished_once(
    committed_app,
    stripe,
    stripe_client,
    pg_url,
    pg_owner_url,
    pg_superuser_url,
    idp,
    stripe_double,
    tmp_path,
):
    with committed_app.app_context():
        s = db.session()
        payout = make_payout(s, amount=2500)
        s.commit()
        ref, account = payout.external_id, payout.destination_account
    stripe_client.v1.accounts.create({"type": "express", "id": account})
    stripe.clear_requests_log()

    with HeadLock(pg_owner_url):
        job = spawn_cli(
            pg_url, idp, stripe_double.url, "payouts", "auto-release", log=tmp_path / "job.log"
        )
        wait_for(lambda: answered(stripe, "/v1/transfers"), what="Stripe's answer")
        wait_for(
            lambda: waiting_on_a_lock(pg_superuser_url, str(role_of(pg_url))),
            what="the job waiting before its commit",
        )
        import os
        import signal

        os.killpg(job.pid, signal.SIGKILL)
        job.wait(10)

    def transfers() -> list:
        return [
            t
            for t in stripe_client.v1.transfers.list({"destination": account}).data
            if (t.to_dict().get("metadata") or {}).get("payout_id") == ref
        ]

    assert len(transfers()) == 1
    [movement] = movements(committed_app)
    assert movement.status == MovementStatus.IN_FLIGHT
    with committed_app.app_context():
        p = db.session().scalar(select(SellerPayout).where(SellerPayout.external_id == ref))
        assert p.status != PayoutStatus.RELEASED and p.stripe_transfer_id is None

    result = run_cli(pg_url, idp, stripe_double.url, "payouts", "resume")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "acted=1" in result.stdout
    [transfer] = transfers()
    [movement] = movements(committed_app)
    assert movement.status == MovementStatus.SUCCEEDED and movement.stripe_object_id == transfer.id
    with committed_app.app_context():
        p = db.session().scalar(select(SellerPayout).where(SellerPayout.external_id == ref))
        assert p.status == PayoutStatus.RELEASED and p.stripe_transfer_id == transfer.id
    [entry] = success_entries(committed_app, "payouts:payout:release", ref)
    assert entry.details["extra"]["transfer_id"] == transfer.id
    # Auto-release again (the cron's next tick) moves no more money.
    again = run_cli(pg_url, idp, stripe_double.url, "payouts", "auto-release")
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(transfers()) == 1


def test_approval_killed_between_stripe_and_commit_is_finished_once(
    committed_app,
    console_process,
    stripe,
    stripe_client,
    pg_url,
    pg_owner_url,
    pg_superuser_url,
    idp,
    stripe_double,
):
    """Four eyes in the browser: admin requests, admin2 approves, the worker dies mid-transfer."""
    from console.payouts.models import Approval, ApprovalStatus

    with committed_app.app_context():
        s = db.session()
        payout = make_payout(s, amount=18000)
        s.commit()
        ref, account = payout.external_id, payout.destination_account
    stripe_client.v1.accounts.create({"type": "express", "id": account})
    server = console_process()
    admin = browser_login(server.url, "admin")
    form = confirm_fields(admin, server.url, "payouts:release:request", ref)
    form.update(reason="Seller asked twice; eligible since Monday")
    requested = admin.post(
        f"{server.url}/actions/payouts:release:request/{ref}", data=form, allow_redirects=False
    )
    assert requested.status_code == 303, requested.text[:500]
    with committed_app.app_context():
        approval_id = db.session().scalar(select(Approval.id))
    approver = browser_login(server.url, "admin2")
    form = confirm_fields(approver, server.url, "payouts:release:approve", str(approval_id))
    form.update(reason="Checked the order and the account")
    stripe.clear_requests_log()
    outcome: dict[str, object] = {}

    def press() -> None:
        try:
            outcome["status"] = approver.post(
                f"{server.url}/actions/payouts:release:approve/{approval_id}",
                data=form,
                timeout=60,
            ).status_code
        except requests.RequestException as exc:
            outcome["error"] = type(exc).__name__

    with HeadLock(pg_owner_url):
        click = threading.Thread(target=press)
        click.start()
        wait_for(lambda: answered(stripe, "/v1/transfers"), what="Stripe's answer")
        wait_for(
            lambda: waiting_on_a_lock(pg_superuser_url, str(role_of(pg_url))),
            what="the process waiting before its commit",
        )
        server.kill()
    click.join(30)
    assert "error" in outcome

    result = run_cli(pg_url, idp, stripe_double.url, "payouts", "resume")
    assert result.returncode == 0, result.stdout + result.stderr
    transfers = [
        t
        for t in stripe_client.v1.transfers.list({"destination": account}).data
        if (t.to_dict().get("metadata") or {}).get("payout_id") == ref
    ]
    assert len(transfers) == 1
    with committed_app.app_context():
        s = db.session()
        p = s.scalar(select(SellerPayout).where(SellerPayout.external_id == ref))
        a = s.get(Approval, approval_id)
        assert p.status == PayoutStatus.RELEASED and p.stripe_transfer_id == transfers[0].id
        # The record agrees with the money: the approval that moved it is executed, by admin2.
        assert a.status == ApprovalStatus.EXECUTED, a.status
        assert a.decided_by_sub == "sub-admin-2"
        [item] = a.items
        assert item.result == "released"
