"""The guarded-action contract, for every declared action and every role."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from console import db
from console.actions.framework import REGISTRY, Action, ActionError, Outcome, declare
from console.audit.chain import GENESIS_HASH, entry_hash, parse_canonical_position
from console.audit.models import AuditEntry
from console.db import utcnow
from console.orders.actions import load_order, order_snapshot, order_url
from console.orders.models import Order, OrderNote, OrderStatus
from console.security.models import LoginSession
from console.security.permissions import ROLE_PERMISSIONS, Permission
from tests.actions.helpers import confirm_form, hidden_fields, submit
from tests.conftest import ROLES, AuthActions
from tests.factories import make_coupon, make_failed_run, make_item, make_order


def entries(app, action: str | None = None) -> list[AuditEntry]:
    with app.app_context():
        stmt = select(AuditEntry).order_by(AuditEntry.seq)
        if action:
            stmt = stmt.where(AuditEntry.action == action)
        return list(db.session().scalars(stmt))


def note_count(app, external_id: str) -> int:
    with app.app_context():
        order = db.session().scalar(select(Order).where(Order.external_id == external_id))
        return len(order.notes)


@pytest.fixture
def order(app) -> Order:
    with app.app_context():
        o = make_order(db.session())
        db.session().commit()
        return o


# ---------------------------------------------------------------- test-only declarations


def _fail_effect(ctx, order: Order) -> Outcome:
    order.status = OrderStatus.CANCELLED  # a change that must be rolled back
    ctx.session.flush()
    raise RuntimeError("injected failure inside the effect")


def _refuse_effect(ctx, order: Order) -> Outcome:
    order.status = OrderStatus.CANCELLED
    raise ActionError("Stripe says no", status=502, details={"stripe": "card_declined"})


def _confirm_effect(ctx, order: Order) -> Outcome:
    order.status = OrderStatus.CONFIRMED
    order.confirmed_at = utcnow()
    return Outcome(f"Order {order.external_id} confirmed.")


def _test_action(name: str, effect, **kw) -> Action[Order]:
    return Action[Order](
        name=name,
        label=kw.pop("label", "Test action"),
        permission=kw.pop("permission", Permission.ORDERS_NOTE_ADD),
        target_type="order",
        load=load_order,
        precondition=kw.pop(
            "precondition",
            lambda o: None if o.status == OrderStatus.PAID else f"the order is {o.status.value}.",
        ),
        describe=lambda o: [("Order", o.external_id)],
        effect=effect,
        snapshot=order_snapshot,
        return_url=order_url,
        **kw,
    )


@pytest.fixture
def test_actions() -> Iterator[dict[str, Action[Order]]]:
    declared = {
        "fail": declare(_test_action("tests:order:fail", _fail_effect)),
        "refuse": declare(_test_action("tests:order:refuse", _refuse_effect)),
        "confirm": declare(_test_action("tests:order:confirm", _confirm_effect)),
        "risky": declare(
            _test_action(
                "tests:order:risky",
                _confirm_effect,
                high_risk=True,
                ticket_required=True,
                permission=Permission.ORDERS_ORDER_REFUND,
            )
        ),
    }
    yield declared
    for action in declared.values():
        REGISTRY.pop(action.name, None)


# ---------------------------------------------------------------- the role matrix


def production_actions() -> list[Action]:
    return [a for a in REGISTRY.values() if not a.name.startswith("tests:")]


def test_registry_is_not_empty():
    assert "orders:note:add" in REGISTRY


def make_webhook_event(s) -> str:
    from console.payments.models import WebhookEvent, WebhookStatus

    s.add(
        WebhookEvent(
            event_id="evt_matrix_1",
            type="customer.created",
            raw_body='{"id": "evt_matrix_1", "type": "customer.created", '
            '"data": {"object": {"id": "cus_1"}}}',
            status=WebhookStatus.FAILED,
        )
    )
    s.flush()
    return "evt_matrix_1"


def make_payout(s, **fields):
    from tests.factories import make_payout as factory

    return factory(s, **fields)


def make_approval(s) -> int:
    from console.payouts.release import request_release

    payout = make_payout(s)
    approval = request_release(
        s, [payout], actor={"sub": "someone-else", "email": "x@example.test"}, reason="matrix"
    )
    return approval.id


def make_finding(s) -> str:
    from console.reconciliation.models import FindingType, ReconciliationFinding, Severity

    s.add(
        ReconciliationFinding(
            fingerprint="transfer_order_not_completed:tr_matrix",
            type=FindingType.TRANSFER_ORDER_NOT_COMPLETED,
            severity=Severity.MEDIUM,
            explanation="matrix",
            transfer_id="tr_matrix",
        )
    )
    s.flush()
    return "transfer_order_not_completed:tr_matrix"


def make_invoice(s) -> str:
    from console.invoices.models import Invoice, InvoiceStatus

    order = make_order(s)
    s.add(
        Invoice(
            external_id=f"INV-{order.external_id}",
            order_id=order.id,
            amount=order.amount,
            currency=order.currency,
            status=InvoiceStatus.FAILED,
        )
    )
    s.flush()
    return f"INV-{order.external_id}"


def make_api_key(s) -> str:
    from console.integrations.keys import issue_key

    return str(issue_key(s, name="matrix", shop="matrix", scopes=["orders"], actor_sub="t").key.id)


def make_endpoint(s) -> int:
    from console.integrations.delivery import new_secret, seal
    from console.integrations.models import WebhookEndpoint

    endpoint = WebhookEndpoint(
        url="http://127.0.0.1:9/matrix", secret_enc=seal(new_secret()), created_by_sub="t"
    )
    s.add(endpoint)
    s.flush()
    return endpoint.id


def make_delivery(s) -> str:
    from console.integrations.models import DeliveryStatus, EventDelivery
    from console.integrations.outbox import emit

    endpoint_id = make_endpoint(s)
    event = emit(s, "order.cancelled", make_order(s), actor={}, reason="matrix", audit_seq=None)
    delivery = s.query(EventDelivery).filter_by(event_pk=event.id, endpoint_id=endpoint_id).one()
    delivery.status = DeliveryStatus.FAILED
    s.flush()
    return str(delivery.id)


# One target per target type; a new queue's actions must add theirs here.
TARGET_FACTORIES = {
    "order": lambda s: make_order(s).external_id,
    "webhook_event": make_webhook_event,
    "invoice": make_invoice,
    "invoice_selection": lambda s: "status=failed",
    "payout": lambda s: make_payout(s).external_id,
    "approval": lambda s: str(make_approval(s)),
    "payout_selection": lambda s: (make_payout(s), "all")[1],
    "reconciliation": lambda s: "stripe",
    "finding": make_finding,
    "job": lambda s: "invoices-retry-stuck",
    "inventory_item": lambda s: make_item(s).sku,
    "coupon": lambda s: make_coupon(s).code,
    "coupon_leaks": lambda s: (make_coupon(s), "all")[1],
    "supplier_sync_run": lambda s: str(make_failed_run(s).id),
    "integrations": lambda s: "shop",
    "api_key": make_api_key,
    "webhook_endpoint": lambda s: str(make_endpoint(s)),
    "delivery": make_delivery,
}


@pytest.fixture
def targets(app) -> dict[str, str]:
    with app.app_context():
        s = db.session()
        made = {kind: factory(s) for kind, factory in TARGET_FACTORIES.items()}
        s.commit()
        return made


def test_every_action_type_has_a_matrix_target():
    missing = {a.target_type for a in production_actions()} - set(TARGET_FACTORIES)
    assert not missing, f"add target factories for {missing}"


@pytest.mark.parametrize("role", ROLES)
def test_every_action_with_every_role(app, auth, client, targets, role):
    """A role without the permission gets 403 and an audited denial; others get through."""
    auth.as_role(role)
    csrf = auth.csrf_token()
    granted = ROLE_PERMISSIONS[role]
    for action in production_actions():
        target_id = targets[action.target_type]
        url = f"/actions/{action.name}/{target_id}"
        before = len(entries(app, action.name))
        data = {
            "csrf_token": csrf,
            "idempotency_key": f"matrix-{role}-{action.name.replace(':', '-')}-0001",
            "reason": "Role matrix walk: checking permissions",
            "ticket": "OPS-1",
        }
        resp = client.post(url, data=data)
        denied = [e for e in entries(app, action.name)[before:] if e.outcome == "denied"]
        if action.permission in granted:
            assert resp.status_code != 403, (role, action.name)
            assert not denied
            assert client.get(url).status_code == 200
        else:
            assert resp.status_code == 403, (role, action.name, resp.status_code)
            assert len(denied) == 1, (role, action.name)
            assert denied[0].actor_roles == [role]
            assert denied[0].target_id == target_id
            assert client.get(url).status_code == 403


def test_forbidden_button_is_not_shown(app, auth, client, order):
    auth.as_role("auditor")
    html = client.get(f"/orders/{order.external_id}").get_data(as_text=True)
    assert "/actions/orders:note:add/" not in html
    auth.as_role("support")
    html = client.get(f"/orders/{order.external_id}").get_data(as_text=True)
    assert f"/actions/orders:note:add/{order.external_id}" in html


# ---------------------------------------------------------------- the contract


def test_add_note_writes_note_and_audit_entry_and_redirects(app, auth, client, order):
    auth.as_role("support")
    resp = submit(client, "orders:note:add", order.external_id, reason="Customer says paid twice")
    assert resp.status_code == 303
    assert resp.headers["Location"] == f"/orders/{order.external_id}"
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Note added to order" in page
    assert "Customer says paid twice" in page
    [entry] = entries(app, "orders:note:add")
    assert entry.outcome == "success"
    assert entry.actor_email == "support@example.test"
    assert entry.reason == "Customer says paid twice"
    assert entry.details["before"]["notes"] == 0 and entry.details["after"]["notes"] == 1
    assert entry.request_id and entry.ip


def test_htmx_submit_swaps_the_row_and_flashes(app, auth, client, order):
    auth.as_role("support")
    resp = submit(client, "orders:note:add", order.external_id, htmx=True)
    assert resp.status_code == 200
    assert resp.headers.get("HX-Location") or resp.headers.get("HX-Retarget")
    assert note_count(app, order.external_id) == 1


def test_reason_is_required_and_nothing_changes(app, auth, client, order):
    auth.as_role("support")
    resp = submit(client, "orders:note:add", order.external_id, reason="")
    assert resp.status_code == 422
    assert "Write the note." in resp.get_data(as_text=True)
    assert note_count(app, order.external_id) == 0


def test_reason_is_rendered_escaped(app, auth, client, order):
    auth.as_role("support")
    submit(client, "orders:note:add", order.external_id, reason="<script>alert(1)</script> hi")
    html = client.get(f"/orders/{order.external_id}").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_missing_csrf_token_is_400_and_nothing_changes(app, auth, client, order):
    auth.as_role("support")
    form = confirm_form(client, "orders:note:add", order.external_id)
    form.pop("csrf_token")
    resp = submit(client, "orders:note:add", order.external_id, form=form)
    assert resp.status_code == 400
    assert "security token" in resp.get_data(as_text=True)
    assert note_count(app, order.external_id) == 0


def test_foreign_csrf_token_is_400(app, idp, session_app, order):
    first = session_app.test_client()
    AuthActions(first, idp).as_role("support")
    foreign = confirm_form(first, "orders:note:add", order.external_id)
    second = session_app.test_client()
    AuthActions(second, idp).as_role("support")
    resp = submit(second, "orders:note:add", order.external_id, form=foreign)
    assert resp.status_code == 400
    assert note_count(app, order.external_id) == 0


def test_double_submit_same_key_has_one_effect(app, auth, client, order):
    auth.as_role("support")
    form = confirm_form(client, "orders:note:add", order.external_id)
    first = submit(client, "orders:note:add", order.external_id, form=form)
    second = submit(client, "orders:note:add", order.external_id, form=form)
    assert first.status_code == second.status_code == 303
    assert note_count(app, order.external_id) == 1
    assert len(entries(app, "orders:note:add")) == 1
    assert "repeated submit" in client.get("/").get_data(as_text=True)


def test_back_and_submit_again_without_javascript_adds_no_second_note(app, auth, client, order):
    """Back re-renders the form with a new key: the same note by the same person is a repeat."""
    auth.as_role("support")
    first = submit(client, "orders:note:add", order.external_id, reason="Customer says paid twice")
    assert first.status_code == 303
    # Back, the browser shows a fresh confirm form (new idempotency key); submit again.
    second = submit(client, "orders:note:add", order.external_id, reason="Customer says paid twice")
    assert second.status_code == 303
    assert note_count(app, order.external_id) == 1
    assert len([e for e in entries(app, "orders:note:add") if e.outcome == "success"]) == 1
    assert "submitted again; nothing ran twice" in client.get("/").get_data(as_text=True)
    # A different reason is a different note, on purpose.
    third = submit(client, "orders:note:add", order.external_id, reason="Second call, new details")
    assert third.status_code == 303
    assert note_count(app, order.external_id) == 2


def test_the_same_submit_by_another_person_is_not_a_repeat(app, idp, session_app, order):
    for role in ("support", "admin"):
        c = session_app.test_client()
        AuthActions(c, idp).as_role(role)
        resp = submit(c, "orders:note:add", order.external_id, reason="Customer says paid twice")
        assert resp.status_code == 303
    assert note_count(app, order.external_id) == 2


def test_success_on_the_full_page_confirm_shows_in_place(app, auth, client, order):
    """After a step-up the user confirms on /actions/...: htmx answers into that page."""
    auth.as_role("support")
    url = f"/actions/orders:note:add/{order.external_id}"
    form = confirm_form(client, "orders:note:add", order.external_id)
    form["reason"] = "Confirmed on the full page"
    resp = client.post(
        url,
        data=form,
        headers={"HX-Request": "true", "HX-Current-URL": f"http://localhost{url}"},
    )
    assert resp.status_code == 200
    assert resp.headers["HX-Retarget"] == "#confirm-panel"
    body = resp.get_data(as_text=True)
    assert "Note added" in body and 'id="confirm-panel"' in body
    assert f'href="/orders/{order.external_id}"' in body  # a way back to the record
    assert note_count(app, order.external_id) == 1


def test_stale_precondition_is_409_and_no_change(app, auth, client, order, test_actions):
    auth.as_role("support")
    form = confirm_form(client, "tests:order:confirm", order.external_id)
    with app.app_context():  # someone else cancels the order meanwhile
        s = db.session()
        s.get(Order, order.id).status = OrderStatus.CANCELLED
        s.commit()
    resp = submit(client, "tests:order:confirm", order.external_id, form=form)
    assert resp.status_code == 409
    assert "out of date" in resp.get_data(as_text=True)
    with app.app_context():
        assert db.session().get(Order, order.id).status == OrderStatus.CANCELLED
    [entry] = entries(app, "tests:order:confirm")
    assert entry.outcome == "failed"


def test_injected_failure_rolls_back_and_audits_failed(app, auth, client, order, test_actions):
    auth.as_role("support")
    resp = submit(client, "tests:order:fail", order.external_id)
    assert resp.status_code == 500
    body = resp.get_data(as_text=True)
    assert "nothing was changed" in body and "Traceback" not in body
    with app.app_context():
        assert db.session().get(Order, order.id).status == OrderStatus.PAID
    [entry] = entries(app, "tests:order:fail")
    assert entry.outcome == "failed"
    assert "injected failure" in entry.details["extra"]["error"]


def test_action_error_shows_message_and_audits(app, auth, client, order, test_actions):
    auth.as_role("support")
    resp = submit(client, "tests:order:refuse", order.external_id)
    assert resp.status_code == 502
    assert "Stripe says no" in resp.get_data(as_text=True)
    with app.app_context():
        assert db.session().get(Order, order.id).status == OrderStatus.PAID
    [entry] = entries(app, "tests:order:refuse")
    assert entry.outcome == "failed" and entry.details["extra"]["stripe"] == "card_declined"


def test_high_risk_needs_recent_login_and_ticket(app, auth, client, order, test_actions):
    auth.as_role("admin")
    with app.app_context():
        s = db.session()
        for record in s.scalars(select(LoginSession)):
            record.auth_time = utcnow() - timedelta(minutes=10)
        s.commit()
    page = client.get(f"/actions/tests:order:risky/{order.external_id}").get_data(as_text=True)
    assert "Sign in again at the identity provider" in page
    form = hidden_fields(page)
    resp = submit(client, "tests:order:risky", order.external_id, form=form, ticket="")
    assert resp.status_code == 422  # the ticket is checked first
    resp = submit(client, "tests:order:risky", order.external_id, form=form, ticket="OPS-42")
    assert resp.status_code == 401
    with app.app_context():
        assert db.session().get(Order, order.id).status == OrderStatus.PAID
    assert auth.login("admin", step_up=True).status_code == 302
    form = confirm_form(client, "tests:order:risky", order.external_id)
    resp = submit(client, "tests:order:risky", order.external_id, form=form, ticket="OPS-42")
    assert resp.status_code == 303
    with app.app_context():
        assert db.session().get(Order, order.id).status == OrderStatus.CONFIRMED
    success = [e for e in entries(app, "tests:order:risky") if e.outcome == "success"]
    assert success[0].ticket == "OPS-42"


def test_unknown_action_and_target_are_404(auth, client, order):
    auth.as_role("support")
    assert client.get(f"/actions/orders:nope:add/{order.external_id}").status_code == 404
    assert client.get("/actions/orders:note:add/ORD-NOPE").status_code == 404


def test_get_never_changes_anything(app, auth, client, order):
    auth.as_role("support")
    client.get(f"/actions/orders:note:add/{order.external_id}")
    assert note_count(app, order.external_id) == 0


# ---------------------------------------------------------------- concurrency


def verify_chain(rows: list[AuditEntry]) -> None:
    prev = GENESIS_HASH
    for expected_seq, entry in enumerate(rows, start=1):
        assert entry.seq == expected_seq
        assert entry.prev_hash == prev
        assert entry_hash(entry.canonical) == entry.hash
        assert parse_canonical_position(entry.canonical) == (prev, expected_seq)
        prev = entry.hash


@pytest.mark.slow
def test_concurrent_actions_keep_a_gapless_valid_chain(committed_app, idp):
    with committed_app.app_context():
        s = db.session()
        orders = [make_order(s).external_id for _ in range(20)]
        s.commit()
    clients = []
    for _ in orders:
        c = committed_app.test_client()
        AuthActions(c, idp).as_role("support")
        clients.append((c, confirm_form(c, "orders:note:add", orders[len(clients)])))
    barrier = threading.Barrier(len(clients))
    results: list[int] = []

    def run(i: int) -> None:
        c, form = clients[i]
        barrier.wait()
        resp = submit(c, "orders:note:add", orders[i], form=form)
        results.append(resp.status_code)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == [303] * 20
    with committed_app.app_context():
        rows = list(db.session().scalars(select(AuditEntry).order_by(AuditEntry.seq)))
        notes = db.session().scalars(select(OrderNote)).all()
    assert len(notes) == 20
    assert len([r for r in rows if r.action == "orders:note:add"]) == 20
    verify_chain(rows)
