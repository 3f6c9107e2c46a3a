"""Four-eyes release: a request bound to its payload, approval by someone else,
and at most one Stripe transfer per payout whatever happens."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from console import db
from console.audit.models import AuditEntry
from console.payments.models import MoneyMovement, MovementStatus
from console.payouts.models import (
    Approval,
    ApprovalStatus,
    DisputeStatus,
    PayoutStatus,
    SellerPayout,
)
from tests.actions.helpers import confirm_form, submit
from tests.conftest import AuthActions
from tests.factories import make_payout


def payout_of(app, external_id: str) -> SellerPayout:
    with app.app_context():
        return db.session().scalar(
            select(SellerPayout).where(SellerPayout.external_id == external_id)
        )


def approval_of(app, approval_id: int) -> Approval:
    with app.app_context():
        return db.session().get(Approval, approval_id)


def transfers_for(stripe_client, payout: SellerPayout) -> list:
    return [
        t
        for t in stripe_client.v1.transfers.list(
            {"limit": 100, "transfer_group": f"order-{payout.order_id}"}
        ).data
        if t.to_dict().get("metadata", {}).get("payout_id") == payout.external_id
    ]


def audit(app, action: str) -> list[AuditEntry]:
    with app.app_context():
        return list(db.session().scalars(select(AuditEntry).where(AuditEntry.action == action)))


@pytest.fixture
def eligible(app, stripe_client):
    with app.app_context():
        s = db.session()
        payout = make_payout(s, amount=18000)
        s.commit()
    stripe_client.v1.accounts.create({"type": "express", "id": payout.destination_account})
    return payout


def request_as_admin(client, payout) -> int:
    resp = submit(
        client, "payouts:release:request", payout.external_id, reason="Auto-release failed twice"
    )
    assert resp.status_code == 303, resp.get_data(as_text=True)[:500]
    return int(audit_request_id(client, payout))


def audit_request_id(client, payout) -> int:
    app = client.application
    with app.app_context():
        return db.session().scalar(select(Approval.id).order_by(Approval.id.desc()))


def test_request_then_approve_by_another_admin_transfers_once(
    app, idp, eligible, stripe, stripe_client
):
    requester = app.test_client()
    AuthActions(requester, idp).as_role("admin")
    approval_id = request_as_admin(requester, eligible)
    approval = approval_of(app, approval_id)
    assert approval.status == ApprovalStatus.PENDING and len(approval.payload_hash) == 64
    assert payout_of(app, eligible.external_id).status == PayoutStatus.PENDING_APPROVAL

    approver = app.test_client()
    AuthActions(approver, idp).as_role("admin2")
    page = approver.get("/approvals").get_data(as_text=True)
    assert "Approve and release" in page and "180.00 EUR" in page
    resp = submit(
        approver,
        "payouts:release:approve",
        str(approval_id),
        reason="Checked the order and delivery",
    )
    assert resp.status_code == 303
    payout = payout_of(app, eligible.external_id)
    assert payout.status == PayoutStatus.RELEASED and payout.stripe_transfer_id.startswith("tr_")
    assert approval_of(app, approval_id).status == ApprovalStatus.EXECUTED
    [transfer] = transfers_for(stripe_client, payout)
    assert transfer.amount == 18000 and transfer.destination == payout.destination_account
    [released] = audit(app, "payouts:payout:release")
    assert released.details["extra"]["transfer_id"] == transfer.id


def test_self_approval_is_refused_and_audited(app, auth, client, eligible, stripe, stripe_client):
    auth.as_role("admin")
    approval_id = request_as_admin(client, eligible)
    resp = submit(
        client, "payouts:release:approve", str(approval_id), reason="approving my own request"
    )
    assert resp.status_code == 403
    assert "different admin must approve" in resp.get_data(as_text=True)
    assert approval_of(app, approval_id).status == ApprovalStatus.PENDING
    assert audit(app, "payouts:release:approve")[-1].outcome == "failed"
    assert transfers_for(stripe_client, eligible) == []


@pytest.mark.parametrize("change", ["amount", "dispute", "account"])
def test_anything_changed_since_the_request_voids_the_approval(
    app, idp, eligible, stripe, stripe_client, change
):
    requester = app.test_client()
    AuthActions(requester, idp).as_role("admin")
    approval_id = request_as_admin(requester, eligible)
    with app.app_context():
        s = db.session()
        p = s.scalar(select(SellerPayout).where(SellerPayout.external_id == eligible.external_id))
        if change == "amount":
            p.amount = 99000
        elif change == "dispute":
            p.dispute_status = DisputeStatus.OPEN
        else:
            p.destination_account = "acct_attacker"
        s.commit()
    approver = app.test_client()
    AuthActions(approver, idp).as_role("admin2")
    resp = submit(
        approver, "payouts:release:approve", str(approval_id), reason="Approving the release"
    )
    assert resp.status_code == 303
    page = approver.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Approval voided" in page
    assert approval_of(app, approval_id).status == ApprovalStatus.VOIDED
    assert transfers_for(stripe_client, eligible) == []


def test_reject_returns_payout_to_the_queue(app, idp, eligible):
    requester = app.test_client()
    AuthActions(requester, idp).as_role("admin")
    approval_id = request_as_admin(requester, eligible)
    approver = app.test_client()
    AuthActions(approver, idp).as_role("admin2")
    assert (
        submit(
            approver, "payouts:release:reject", str(approval_id), reason="Seller asked to wait"
        ).status_code
        == 303
    )
    assert approval_of(app, approval_id).status == ApprovalStatus.REJECTED
    assert payout_of(app, eligible.external_id).status == PayoutStatus.ELIGIBLE


def test_hold_blocks_release_and_unhold_lifts_it(app, auth, client, eligible):
    auth.as_role("admin")
    assert (
        submit(
            client, "payouts:payout:hold", eligible.external_id, reason="KYC review open"
        ).status_code
        == 303
    )
    blocked = client.get("/payouts/ready?tab=blocked").get_data(as_text=True)
    assert eligible.external_id in blocked and "on admin hold: KYC review open" in blocked
    assert "/actions/payouts:release:request/" + eligible.external_id not in client.get(
        f"/payouts/{eligible.external_id}"
    ).get_data(as_text=True)
    assert (
        submit(
            client, "payouts:payout:unhold", eligible.external_id, reason="KYC cleared"
        ).status_code
        == 303
    )
    assert payout_of(app, eligible.external_id).admin_hold is False


def test_support_may_request_but_not_approve(app, idp, eligible):
    support = app.test_client()
    AuthActions(support, idp).as_role("support")
    approval_id = request_as_admin(support, eligible)
    form = {
        "csrf_token": AuthActions(support, idp).csrf_token(),
        "idempotency_key": "crafted-approve-000001",
        "reason": "crafted approval",
    }
    resp = submit(support, "payouts:release:approve", str(approval_id), form=form)
    assert resp.status_code == 403
    assert audit(app, "payouts:release:approve")[-1].outcome == "denied"


@pytest.mark.slow
def test_fifty_concurrent_approvals_give_exactly_one_transfer(
    committed_app, idp, stripe, stripe_client
):
    with committed_app.app_context():
        s = db.session()
        payout = make_payout(s, amount=12600)
        s.commit()
    stripe_client.v1.accounts.create({"type": "express", "id": payout.destination_account})
    requester = committed_app.test_client()
    AuthActions(requester, idp).as_role("admin")
    approval_id = request_as_admin(requester, payout)
    clients = []
    for _ in range(50):
        c = committed_app.test_client()
        AuthActions(c, idp).as_role("admin2")
        clients.append((c, confirm_form(c, "payouts:release:approve", str(approval_id))))
    barrier = threading.Barrier(50)
    statuses: list[int] = []

    def approve(i: int) -> None:
        c, form = clients[i]
        barrier.wait()
        statuses.append(
            submit(
                c,
                "payouts:release:approve",
                str(approval_id),
                form=form,
                reason="Approving concurrently",
            ).status_code
        )

    threads = [threading.Thread(target=approve, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    # One approval ran; every other submit got 409 (the row was locked, or the request no
    # longer pending), or, arriving after the commit with the same reason by the same
    # admin, "already done" (303). Never a second effect.
    assert sorted(set(statuses)) in ([303, 409], [303]), sorted(statuses)
    assert statuses.count(409) + statuses.count(303) == 50
    assert len(transfers_for(stripe_client, payout)) == 1
    assert len(audit(committed_app, "payouts:payout:release")) == 1
    assert payout_of(committed_app, payout.external_id).status == PayoutStatus.RELEASED


@pytest.mark.slow
@pytest.mark.parametrize(
    ("status", "after_effect", "delay"),
    [(500, True, 0.0), (500, False, 0.0), (429, False, 0.0), (500, True, 3.0)],
    ids=["crash-after-stripe", "500", "429", "timeout"],
)
def test_unknown_outcome_stays_in_flight_and_resume_gives_one_transfer(
    committed_app, idp, stripe, stripe_client, status, after_effect, delay
):
    with committed_app.app_context():
        s = db.session()
        payout = make_payout(s, amount=5100)
        s.commit()
    stripe_client.v1.accounts.create({"type": "express", "id": payout.destination_account})
    requester = committed_app.test_client()
    AuthActions(requester, idp).as_role("admin")
    approval_id = request_as_admin(requester, payout)
    approver = committed_app.test_client()
    AuthActions(approver, idp).as_role("admin2")
    form = confirm_form(approver, "payouts:release:approve", str(approval_id))
    stripe.add_fault(
        path_prefix="/v1/transfers",
        method="POST",
        status=status,
        after_effect=after_effect,
        delay=delay,
    )
    # ...and Stripe stays unreachable for every retry the gateway makes.
    stripe.add_fault(
        path_prefix="/v1/transfers",
        method="POST",
        status=status,
        count=committed_app.config["SETTINGS"].stripe_max_attempts - 1,
    )
    resp = submit(
        approver,
        "payouts:release:approve",
        str(approval_id),
        form=form,
        reason="Approving with faults",
    )
    assert resp.status_code == 303
    after = payout_of(committed_app, payout.external_id)
    assert after.status == PayoutStatus.APPROVED  # never "failed" without knowing
    with committed_app.app_context():
        movement = db.session().scalars(select(MoneyMovement)).one()
        assert movement.status == MovementStatus.IN_FLIGHT
    result = committed_app.test_cli_runner().invoke(args=["payouts", "resume"])
    assert "acted=1" in result.output, result.output
    assert len(transfers_for(stripe_client, payout)) == 1
    assert payout_of(committed_app, payout.external_id).status == PayoutStatus.RELEASED
    again = committed_app.test_cli_runner().invoke(args=["payouts", "resume"])
    assert "acted=0" in again.output
    assert len(transfers_for(stripe_client, payout)) == 1


def test_auto_release_releases_within_the_limit_and_asks_above_it(app, stripe, stripe_client):
    with app.app_context():
        s = db.session()
        small = make_payout(s, amount=4000)
        large = make_payout(s, amount=90000)
        held = make_payout(s, amount=1000, admin_hold=True)
        s.commit()
    for p in (small, large, held):
        stripe_client.v1.accounts.create({"type": "express", "id": p.destination_account})
    app.config["PAYOUT_AUTO_RELEASE_LIMIT"] = 50000
    try:
        result = app.test_cli_runner().invoke(args=["payouts", "auto-release"])
    finally:
        app.config.pop("PAYOUT_AUTO_RELEASE_LIMIT")
    assert result.exit_code == 0, result.output
    assert "acted=1 errors=0 approval_requested=1" in result.output
    assert payout_of(app, small.external_id).status == PayoutStatus.RELEASED
    assert payout_of(app, large.external_id).status == PayoutStatus.PENDING_APPROVAL
    assert payout_of(app, held.external_id).status == PayoutStatus.ELIGIBLE
    assert (
        transfers_for(stripe_client, large) == [] and len(transfers_for(stripe_client, small)) == 1
    )
    with app.app_context():
        from console.ops.models import JobRun

        run = db.session().scalar(select(JobRun).where(JobRun.job == "payouts-auto-release"))
        assert run.scanned == 2 and run.acted == 1


@pytest.mark.slow
def test_two_auto_release_processes_release_each_payout_once(committed_app, stripe, stripe_client):
    with committed_app.app_context():
        s = db.session()
        payouts = [make_payout(s, amount=1000 + i) for i in range(10)]
        s.commit()
    for p in payouts:
        stripe_client.v1.accounts.create({"type": "express", "id": p.destination_account})
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        committed_app.test_cli_runner().invoke(args=["payouts", "auto-release"])

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for p in payouts:
        assert len(transfers_for(stripe_client, p)) == 1, p.external_id
        assert payout_of(committed_app, p.external_id).status == PayoutStatus.RELEASED
    assert len(audit(committed_app, "payouts:payout:release")) == 10


@pytest.mark.slow
def test_bulk_release_row_by_row_with_progress_and_resume(
    committed_app, idp, stripe, stripe_client
):
    import time

    with committed_app.app_context():
        s = db.session()
        payouts = [make_payout(s, amount=1000 + i) for i in range(8)]
        s.commit()
    for p in payouts:
        stripe_client.v1.accounts.create({"type": "express", "id": p.destination_account})
    stripe.set_rate_limit(25)
    requester = committed_app.test_client()
    AuthActions(requester, idp).as_role("support")
    assert (
        submit(
            requester, "payouts:selection:request", "all", reason="Bulk release after outage"
        ).status_code
        == 303
    )
    with committed_app.app_context():
        approval = db.session().scalar(select(Approval).order_by(Approval.id.desc()))
        assert len(approval.items) == 8
    # A first worker stops after three rows (as if the process died).
    with committed_app.app_context():
        from console.payments.gateway import gateway
        from console.payouts.release import execute_approval

        s = db.session()
        a = s.get(Approval, approval.id)
        a.status = ApprovalStatus.APPROVED
        for p in s.scalars(select(SellerPayout)):
            p.status = PayoutStatus.APPROVED
        s.commit()
        counts = execute_approval(s, gateway(), approval.id, actor={"sub": "t"}, max_rows=3)
        assert counts["released"] == 3
    admin = committed_app.test_client()
    AuthActions(admin, idp).as_role("admin")
    page = admin.get("/approvals").get_data(as_text=True)
    assert "3 of 8 released" in page and 'hx-trigger="every 1s"' in page
    result = committed_app.test_cli_runner().invoke(args=["payouts", "resume"])
    assert "acted=5" in result.output, result.output
    for p in payouts:
        assert len(transfers_for(stripe_client, p)) == 1
    fragment = admin.get(f"/approvals/{approval.id}/progress").get_data(as_text=True)
    assert "8 of 8 released" in fragment and "every 1s" not in fragment
    assert approval_of(committed_app, approval.id).status == ApprovalStatus.EXECUTED
    rate_limited = [r for r in stripe.requests_log() if r["status"] == 429]
    assert rate_limited == []
    del time


@pytest.mark.slow
def test_approving_a_large_request_releases_in_the_background(
    committed_app, idp, stripe, stripe_client, start_worker
):
    """The approval commits its release job; a worker process (started after) runs it."""
    import time

    with committed_app.app_context():
        s = db.session()
        payouts = [make_payout(s, amount=2000 + i) for i in range(7)]
        s.commit()
    for p in payouts:
        stripe_client.v1.accounts.create({"type": "express", "id": p.destination_account})
    requester = committed_app.test_client()
    AuthActions(requester, idp).as_role("admin")
    submit(requester, "payouts:selection:request", "all", reason="Bulk release after outage")
    approval_id = audit_request_id(requester, payouts[0])
    approver = committed_app.test_client()
    AuthActions(approver, idp).as_role("admin2")
    resp = submit(approver, "payouts:release:approve", str(approval_id), reason="Approved in bulk")
    assert resp.status_code == 303
    # No worker yet: the job waits in the queue, nothing was transferred by the web request.
    assert approval_of(committed_app, approval_id).status == ApprovalStatus.APPROVED
    assert all(transfers_for(stripe_client, p) == [] for p in payouts)
    start_worker()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if approval_of(committed_app, approval_id).status == ApprovalStatus.EXECUTED:
            break
        time.sleep(0.2)
    assert approval_of(committed_app, approval_id).status == ApprovalStatus.EXECUTED
    for p in payouts:
        assert len(transfers_for(stripe_client, p)) == 1


def test_resume_after_the_key_may_have_expired_finds_the_transfer_by_metadata(
    committed_app, stripe, stripe_client
):
    from datetime import timedelta

    from console.db import utcnow
    from console.payments import money
    from console.payments.models import MovementKind

    with committed_app.app_context():
        s = db.session()
        payout = make_payout(s, amount=3300, status=PayoutStatus.APPROVED)
        s.commit()
    stripe_client.v1.accounts.create({"type": "express", "id": payout.destination_account})
    group = f"order-{payout.order_id}"
    # Stripe made the transfer 24 h ago; our commit never happened.
    stripe_client.v1.transfers.create(
        {
            "amount": 3300,
            "currency": "eur",
            "destination": payout.destination_account,
            "transfer_group": group,
            "metadata": {"payout_id": payout.external_id},
        },
        {"idempotency_key": "lost-key-from-yesterday"},
    )
    with committed_app.app_context():
        movement = money.begin(
            kind=MovementKind.TRANSFER,
            idempotency_key=f"transfer-{payout.external_id}",
            target_type="payout",
            target_id=payout.external_id,
            amount=3300,
            currency="EUR",
            payload={
                "destination": payout.destination_account,
                "transfer_group": group,
                "payout": payout.external_id,
            },
            actor_sub="t",
        )
        s = db.session()
        s.get(MoneyMovement, movement.id).created_at = utcnow() - timedelta(hours=24)
        s.commit()
    result = committed_app.test_cli_runner().invoke(args=["payouts", "resume"])
    assert "acted=1" in result.output, result.output
    assert len(transfers_for(stripe_client, payout)) == 1  # found, not sent again
    assert payout_of(committed_app, payout.external_id).status == PayoutStatus.RELEASED
