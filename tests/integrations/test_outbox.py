"""The transactional outbox: an action's event commits with it, or not at all."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from console import db
from console.actions.framework import REGISTRY, Action, Outcome, declare
from console.audit.models import AuditEntry
from console.integrations.delivery import new_secret, seal
from console.integrations.models import DeliveryStatus, EventDelivery, OutboxEvent, WebhookEndpoint
from console.integrations.outbox import EVENT_TYPES, emit, payload
from console.orders.actions import load_order, order_snapshot, order_url
from console.orders.models import Order, OrderStatus
from console.security.permissions import Permission
from tests.actions.helpers import submit
from tests.factories import make_order, make_payout


def events(app, record_id: str | None = None) -> list[OutboxEvent]:
    with app.app_context():
        stmt = select(OutboxEvent).order_by(OutboxEvent.id)
        if record_id:
            stmt = stmt.where(OutboxEvent.record_id == record_id)
        return list(db.session().scalars(stmt))


@pytest.fixture
def endpoint(app) -> int:
    with app.app_context():
        s = db.session()
        e = WebhookEndpoint(
            url="http://127.0.0.1:9/hook", secret_enc=seal(new_secret()), created_by_sub="t"
        )
        s.add(e)
        s.commit()
        return e.id


@pytest.fixture
def pending_order(app) -> Order:
    with app.app_context():
        s = db.session()
        o = make_order(s, status=OrderStatus.PENDING, paid_at=None, payment_intent_id=None)
        s.commit()
        return o


def test_an_action_writes_its_event_in_the_same_transaction(
    app, auth, client, endpoint, pending_order
):
    auth.as_role("admin")
    resp = submit(client, "orders:order:cancel", pending_order.external_id,
                  reason="Customer asked to cancel by phone")  # fmt: skip
    assert resp.status_code == 303
    [event] = events(app, pending_order.external_id)
    with app.app_context():
        entry = db.session().scalar(
            select(AuditEntry).where(AuditEntry.action == "orders:order:cancel")
        )
        [delivery] = db.session().scalars(select(EventDelivery)).all()
    assert event.type == "order.cancelled" and event.record_kind == "order"
    assert event.audit_seq == entry.seq and event.record_seq == 1
    assert event.actor["email"] == "admin@example.test"
    assert event.reason == "Customer asked to cancel by phone"
    body = payload(event)
    assert body["data"]["record"]["status"] == "cancelled"
    assert body["data"]["sequence"] == 1 and body["data"]["audit_seq"] == entry.seq
    assert delivery.endpoint_id == endpoint and delivery.status == DeliveryStatus.PENDING


def _explode_after_emit(ctx, order: Order) -> Outcome:
    order.status = OrderStatus.CANCELLED
    emit(ctx.session, "order.cancelled", order, actor=ctx.user.actor(), reason="x", audit_seq=None)
    raise RuntimeError("the effect failed after writing its event")


@pytest.fixture
def exploding() -> Iterator[Action[Order]]:
    action = declare(
        Action[Order](
            name="tests:order:explode",
            label="Explode",
            permission=Permission.ORDERS_NOTE_ADD,
            target_type="order",
            load=load_order,
            precondition=lambda o: None,
            describe=lambda o: [],
            effect=_explode_after_emit,
            snapshot=order_snapshot,
            return_url=order_url,
            event="order.cancelled",
        )
    )  # fmt: skip
    yield action
    REGISTRY.pop(action.name, None)


def test_no_event_survives_a_rolled_back_action(app, auth, client, endpoint, pending_order,
                                                exploding):  # fmt: skip
    auth.as_role("support")
    resp = submit(client, "tests:order:explode", pending_order.external_id)
    assert resp.status_code == 500
    assert events(app) == []
    with app.app_context():
        s = db.session()
        assert s.scalars(select(EventDelivery)).all() == []
        assert s.get(Order, pending_order.id).status == OrderStatus.PENDING


def _cancel_one(ctx, order: Order) -> Outcome:
    order.status = OrderStatus.CANCELLED
    return Outcome("cancelled")


@pytest.fixture
def cancel_with_sibling(app) -> Iterator[tuple[Action[Order], Order]]:
    with app.app_context():
        s = db.session()
        sibling = make_order(s, status=OrderStatus.PENDING, paid_at=None, payment_intent_id=None)
        s.commit()
    sibling_id = sibling.external_id

    def both(order: Order) -> list[Order]:
        s = db.session()
        return [order, s.scalar(select(Order).where(Order.external_id == sibling_id))]

    action = declare(
        Action[Order](
            name="tests:order:cancel_one_of_two",
            label="Cancel one of two",
            permission=Permission.ORDERS_NOTE_ADD,
            target_type="order",
            load=load_order,
            precondition=lambda o: None,
            describe=lambda o: [],
            effect=_cancel_one,
            snapshot=order_snapshot,
            return_url=order_url,
            event="order.cancelled",
            event_records=both,
        )
    )  # fmt: skip
    yield action, sibling
    REGISTRY.pop(action.name, None)


def test_records_the_action_left_unchanged_get_no_event(
    app, auth, client, endpoint, pending_order, cancel_with_sibling
):
    _action, sibling = cancel_with_sibling
    auth.as_role("support")
    resp = submit(client, "tests:order:cancel_one_of_two", pending_order.external_id)
    assert resp.status_code == 303
    assert [(e.type, e.record_id) for e in events(app)] == [
        ("order.cancelled", pending_order.external_id)
    ]
    assert events(app, sibling.external_id) == []


def test_each_record_numbers_its_events(app, auth, client, endpoint):
    with app.app_context():
        s = db.session()
        payout = make_payout(s)
        s.commit()
    auth.as_role("admin")
    assert submit(client, "payouts:payout:hold", payout.external_id).status_code == 303
    assert submit(client, "payouts:payout:unhold", payout.external_id).status_code == 303
    seen = events(app, payout.external_id)
    assert [(e.type, e.record_seq) for e in seen] == [("payout.held", 1), ("payout.hold_lifted", 2)]
    assert payload(seen[0])["data"]["record"]["admin_hold"] is True


def test_auto_release_emits_payout_released_after_its_audit_entry(app, stripe, stripe_client):
    with app.app_context():
        s = db.session()
        payout = make_payout(s, amount=1500)
        s.commit()
    stripe_client.v1.accounts.create({"type": "express", "id": payout.destination_account})
    result = app.test_cli_runner().invoke(args=["payouts", "auto-release"])
    assert result.exit_code == 0, result.output
    [event] = events(app, payout.external_id)
    with app.app_context():
        entry = db.session().scalar(
            select(AuditEntry).where(
                AuditEntry.action == "payouts:payout:release",
                AuditEntry.target_id == payout.external_id,
            )
        )
    assert event.type == "payout.released" and event.audit_seq == entry.seq
    assert event.data["record"]["status"] == "released"
    assert event.data["record"]["stripe_transfer_id"].startswith("tr_")


def test_the_other_queues_event_types_are_declared():
    # The inventory and coupon actions (another branch) add `event=` with these names.
    assert EVENT_TYPES["inventory.correction_posted"] == "inventory_item"
    assert EVENT_TYPES["coupon.reservations_released"] == "coupon"
