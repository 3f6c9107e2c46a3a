"""Stripe faults at the HTTP level: retries with the same key, bounded, 0 duplicates.

A fault-injecting proxy (`devtools/fault_proxy.py`) sits between the real
stripe SDK and the Stripe double and answers 500 or 429 with Retry-After,
resets the connection before or after forwarding, or holds the request or
the answer past the client's timeout. The gateway (the only module that
retries) must end with exactly one Stripe object per idempotency key, try at
most STRIPE_MAX_ATTEMPTS times with that same key, wait between attempts
(at least Retry-After) and give up before the web worker would be killed.
Figure: 0 duplicate refunds or transfers over every fault kind.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.config import ConfigError, load_settings
from console.payments.gateway import RETRY_BASE_SECONDS, GatewayError, StripeGateway
from devtools.fault_proxy import FaultProxy
from devtools.stripe_double import create_succeeded_payment_intent

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 1  # the client's timeout in these tests (seconds)


@pytest.fixture
def proxy(stripe_double, stripe) -> Iterator[FaultProxy]:
    p = FaultProxy.start(stripe_double.url)
    yield p
    p.stop()


def gateway_through(proxy: FaultProxy, **env: str) -> StripeGateway:
    settings = load_settings(
        {
            "CONSOLE_ENV": "test",
            "DATABASE_URL": "postgresql://unused@127.0.0.1/unused",
            "STRIPE_API_BASE": proxy.url,
            "STRIPE_TIMEOUT_SECONDS": str(TIMEOUT),
            "STRIPE_MAX_REQUESTS_PER_SECOND": "0",
            **env,
        }
    )
    return StripeGateway(settings)


def refund(gw: StripeGateway, stripe_client) -> tuple[str, object, str]:
    pi = create_succeeded_payment_intent(stripe_client, amount=3000, currency="eur")
    key = f"refund-test-{uuid.uuid4().hex[:8]}"
    result = gw.create_refund(
        payment_intent=pi.id, amount=1200, idempotency_key=key, metadata={"order_id": "ORD-F"}
    )
    return key, result, pi.id


def refunds_at_stripe(stripe_client, pi_id: str) -> int:
    return len(stripe_client.v1.refunds.list({"payment_intent": pi_id}).data)


def transfer(gw: StripeGateway, stripe_client) -> tuple[str, object, str]:
    account = stripe_client.v1.accounts.create({"type": "express"}).id
    group = f"order-{uuid.uuid4().hex[:8]}"
    key = f"transfer-test-{group}"
    result = gw.create_transfer(
        amount=2500,
        currency="eur",
        destination=account,
        transfer_group=group,
        idempotency_key=key,
        metadata={"payout_id": group},
    )
    return key, result, group


def transfers_at_stripe(stripe_client, group: str) -> int:
    return len(stripe_client.v1.transfers.list({"transfer_group": group}).data)


FAULTS = {
    "500 twice": [("status", {"status": 500, "count": 2})],
    "503": [("status", {"status": 503})],
    "429 with Retry-After": [("status", {"status": 429, "retry_after": 1})],
    "reset before forwarding": [("reset", {})],
    "reset after the effect": [("reset_after", {})],
    "answer held past the timeout": [("delay_after", {"seconds": TIMEOUT + 1.5})],
    "request held past the timeout": [("delay", {"seconds": TIMEOUT + 1.5})],
    "reset, then 500": [("reset_after", {}), ("status", {"status": 500})],
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["refund", "transfer"])
@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
def test_fault_is_retried_with_the_same_key_and_moves_money_once(proxy, stripe_client, kind, fault):
    path = "/v1/refunds" if kind == "refund" else "/v1/transfers"
    for fault_kind, options in FAULTS[fault]:
        proxy.add_fault(fault_kind, path_prefix=path, **options)
    gw = gateway_through(proxy)
    key, result, ref = (refund if kind == "refund" else transfer)(gw, stripe_client)
    count = (refunds_at_stripe if kind == "refund" else transfers_at_stripe)(stripe_client, ref)
    assert count == 1, f"{count} objects at Stripe for one key"
    attempts = proxy.requests(path)
    assert {a.idempotency_key for a in attempts} == {key}
    assert 2 <= len(attempts) <= gw.max_attempts
    assert result["id"]  # type: ignore[index]
    gaps = [b.at - a.at for a, b in itertools.pairwise(attempts)]
    assert all(gap >= RETRY_BASE_SECONDS / 2 for gap in gaps), gaps  # backed off
    if fault == "429 with Retry-After":
        assert gaps[0] >= 1.0  # waited as long as Stripe asked


@pytest.mark.slow
def test_retries_are_bounded_and_leave_the_outcome_to_resume(proxy, stripe_client):
    proxy.add_fault("reset_after", path_prefix="/v1/refunds")
    proxy.add_fault("status", path_prefix="/v1/refunds", status=500, count=10)
    gw = gateway_through(proxy)
    pi = create_succeeded_payment_intent(stripe_client, amount=3000, currency="eur")
    key = f"refund-bounded-{uuid.uuid4().hex[:8]}"
    with pytest.raises(GatewayError) as err:
        gw.create_refund(payment_intent=pi.id, amount=500, idempotency_key=key, metadata={})
    assert err.value.outcome_unknown and err.value.attempts == gw.max_attempts
    assert len(proxy.requests("/v1/refunds")) == gw.max_attempts
    # Stripe did act on the first attempt; the same key later gets that refund back.
    proxy.clear()
    again = gw.create_refund(payment_intent=pi.id, amount=500, idempotency_key=key, metadata={})
    assert refunds_at_stripe(stripe_client, pi.id) == 1
    assert again["amount"] == 500


def test_refusals_are_not_retried(proxy, stripe_client):
    gw = gateway_through(proxy)
    with pytest.raises(GatewayError) as err:
        gw.create_refund(
            payment_intent="pi_does_not_exist", amount=100, idempotency_key="refund-no", metadata={}
        )
    assert not err.value.retryable and len(proxy.requests("/v1/refunds")) == 1


def test_the_deadline_stops_retries_before_the_worker_timeout(proxy, stripe_client):
    proxy.add_fault("delay_after", path_prefix="/v1/refunds", seconds=TIMEOUT + 1, count=10)
    gw = gateway_through(
        proxy,
        STRIPE_MAX_ATTEMPTS="10",
        STRIPE_CALL_DEADLINE_SECONDS="3",
        WORKER_TIMEOUT_SECONDS="5",
    )
    pi = create_succeeded_payment_intent(stripe_client, amount=3000, currency="eur")
    with pytest.raises(GatewayError) as err:
        gw.create_refund(payment_intent=pi.id, amount=100, idempotency_key="refund-dl", metadata={})
    assert err.value.kind == "timeout"
    # 10 attempts allowed, but each takes the 1 s timeout: the 3 s deadline leaves room for 2.
    assert err.value.attempts == len(proxy.requests("/v1/refunds")) <= 3
    assert refunds_at_stripe(stripe_client, pi.id) == 1


def test_client_timeout_stays_below_the_gunicorn_worker_timeout():
    namespace: dict[str, object] = {}
    exec((ROOT / "gunicorn.conf.py").read_text(), namespace)
    settings = load_settings({"CONSOLE_ENV": "test", "DATABASE_URL": "postgresql://x@h/d"})
    assert settings.stripe_timeout_seconds <= settings.stripe_call_deadline_seconds
    assert settings.stripe_call_deadline_seconds < namespace["timeout"]
    assert namespace["timeout"] == settings.worker_timeout_seconds
    with pytest.raises(ConfigError, match="give up before the web worker"):
        load_settings(
            {
                "CONSOLE_ENV": "test",
                "DATABASE_URL": "postgresql://x@h/d",
                "STRIPE_CALL_DEADLINE_SECONDS": "30",
            }
        )
    with pytest.raises(ConfigError, match="give up before the web worker"):
        load_settings(
            {
                "CONSOLE_ENV": "test",
                "DATABASE_URL": "postgresql://x@h/d",
                "STRIPE_TIMEOUT_SECONDS": "40",
            }
        )


@pytest.mark.slow
def test_a_refund_against_a_stripe_that_never_answers_ends_before_the_worker_is_killed(
    committed_app, console_process, proxy, stripe_client, pg_url, idp
):
    """Through gunicorn: a clean 502 and its audit entry, the attempt left to resume."""
    from sqlalchemy import select

    from console import db
    from console.audit.models import AuditEntry
    from console.orders.models import OrderStatus
    from console.payments.models import MoneyMovement, MovementStatus, Payment, PaymentStatus
    from tests.factories import make_order
    from tests.reliability.conftest import browser_login, confirm_fields, run_cli

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
    server = console_process(
        stripe_base=proxy.url,
        WORKER_TIMEOUT_SECONDS="8",
        STRIPE_CALL_DEADLINE_SECONDS="5",
        STRIPE_TIMEOUT_SECONDS="2",
    )
    admin = browser_login(server.url, "admin")
    form = confirm_fields(admin, server.url, "orders:order:refund", ref)
    form.update(reason="Refund while Stripe hangs", amount="30.00")
    proxy.add_fault("delay_after", path_prefix="/v1/refunds", seconds=3, count=20)
    resp = admin.post(f"{server.url}/actions/orders:order:refund/{ref}", data=form, timeout=30)
    assert resp.status_code == 502 and "Do not refund again" in resp.text
    assert "WORKER TIMEOUT" not in server.output()
    attempts = proxy.requests("/v1/refunds")
    assert 2 <= len(attempts) <= 3 and len({a.idempotency_key for a in attempts}) == 1
    with committed_app.app_context():
        s = db.session()
        [movement] = s.scalars(select(MoneyMovement)).all()
        assert movement.status == MovementStatus.IN_FLIGHT
        [entry] = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "orders:order:refund")
        ).all()
        assert entry.outcome == "failed" and entry.details["extra"]["stripe"] == "timeout"
    proxy.clear()
    result = run_cli(pg_url, idp, proxy.url, "payouts", "resume")
    assert "acted=1" in result.stdout, result.stdout + result.stderr
    assert refunds_at_stripe(stripe_client, pi.id) == 1
