"""Forwarding paid orders to the supplier (runbook 001): once, however often it is sent."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from console import db
from console.audit.models import AuditEntry
from console.ops.metrics import SUPPLIER_SYNC_FAILURES
from console.orders.models import Order
from tests.actions.helpers import confirm_form, submit
from tests.conftest import SUPPLIER_TIMEOUT, AuthActions
from tests.factories import make_waiting_order

ACTION = "orders:supplier:forward"


def reload(app, external_id: str) -> Order:
    with app.app_context():
        return db.session().scalar(select(Order).where(Order.external_id == external_id))


def audit(app) -> list[AuditEntry]:
    with app.app_context():
        return list(
            db.session().scalars(
                select(AuditEntry).where(AuditEntry.action == ACTION).order_by(AuditEntry.seq)
            )
        )


def failures() -> float:
    return SUPPLIER_SYNC_FAILURES._value.get()


@pytest.fixture
def waiting(app, supplier) -> str:
    with app.app_context():
        order = make_waiting_order(db.session())
        db.session().commit()
        return order.external_id


def test_support_forwards_an_order_through_the_gateway(app, auth, client, supplier, waiting):
    auth.as_role("support")
    html = client.get("/suppliers").get_data(as_text=True)
    assert f"/actions/{ACTION}/{waiting}" in html
    page = client.get(f"/actions/{ACTION}/{waiting}").get_data(as_text=True)
    assert f"forward-{waiting}" in page and "2 x SKU-0002" in page
    resp = submit(client, ACTION, waiting, reason="Automatic forward failed at 02:10")
    assert resp.status_code == 303
    [sent] = supplier.orders()
    assert sent["reference"] == waiting and sent["idempotency_key"] == f"forward-{waiting}"
    assert sent["lines"] == [{"sku": "SKU-0002", "quantity": 2}]
    order = reload(app, waiting)
    assert order.supplier_order_ref == sent["id"] and order.supplier_forwarded_at is not None
    [entry] = audit(app)
    assert entry.outcome == "success" and entry.actor_roles == ["support"]
    assert entry.details["extra"]["supplier_ref"] == sent["id"]
    assert entry.details["after"]["supplier_order_ref"] == sent["id"]
    client.get("/")
    assert "No paid order is waiting" in client.get("/suppliers").get_data(as_text=True)


def test_a_double_click_sends_one_order(app, auth, client, supplier, waiting):
    auth.as_role("support")
    form = confirm_form(client, ACTION, waiting)
    first = submit(client, ACTION, waiting, form=form)
    second = submit(client, ACTION, waiting, form=form)
    assert first.status_code == second.status_code == 303
    assert "repeated submit" in client.get("/").get_data(as_text=True)
    assert len(supplier.orders()) == 1
    assert [e.outcome for e in audit(app)] == ["success"]


def test_a_second_person_later_is_refused_and_sends_nothing(
    app, idp, auth, client, supplier, waiting
):
    auth.as_role("support")
    other = app.test_client()
    AuthActions(other, idp).as_role("admin")
    theirs = confirm_form(other, ACTION, waiting)
    assert submit(client, ACTION, waiting).status_code == 303
    late = submit(other, ACTION, waiting, form=theirs)
    assert late.status_code == 409 and "already forwarded" in late.get_data(as_text=True)
    assert len(supplier.orders()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("same_form", [True, False], ids=["double-click", "two-people"])
def test_concurrent_forwards_give_the_supplier_one_order(committed_app, idp, supplier, same_form):
    with committed_app.app_context():
        external_id = make_waiting_order(db.session()).external_id
        db.session().commit()
    supplier.add_fault(path_prefix="/v1/orders", delay=0.4, count=5)  # slow, but in time
    clients = []
    for role in ("support", "admin"):
        c = committed_app.test_client()
        AuthActions(c, idp).as_role(role)
        clients.append(c)
    forms = [confirm_form(c, ACTION, external_id) for c in clients]
    if same_form:  # one person, one form, two submits from two tabs of one session
        clients, forms = [clients[0], clients[0]], [forms[0], forms[0]]
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def run(i: int) -> None:
        barrier.wait()
        statuses.append(submit(clients[i], ACTION, external_id, form=forms[i]).status_code)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(statuses) == [303, 409]  # the second one: someone is acting on it right now
    assert len(supplier.orders()) == 1
    successes = [e for e in audit(committed_app) if e.outcome == "success"]
    assert len(successes) == 1


def test_a_retry_after_a_timeout_gives_the_supplier_one_order(app, auth, client, supplier, waiting):
    # The supplier takes the order but answers after our timeout.
    supplier.add_fault(path_prefix="/v1/orders", delay=SUPPLIER_TIMEOUT + 0.5, after_effect=True)
    before = failures()
    auth.as_role("support")
    resp = submit(client, ACTION, waiting)
    assert resp.status_code == 504
    body = resp.get_data(as_text=True)
    assert "did not answer within 1 s" in body and "same idempotency key" in body
    assert reload(app, waiting).supplier_forwarded_at is None
    [failed] = audit(app)
    assert failed.outcome == "failed" and failed.details["extra"]["supplier_error"] == "timeout"
    assert failures() == before + 1
    assert len(supplier.orders()) == 1  # it did arrive
    # The retry path: the button is still there, and pressing it sends the same key.
    assert f"/actions/{ACTION}/{waiting}" in client.get("/suppliers").get_data(as_text=True)
    again = submit(client, ACTION, waiting)
    assert again.status_code == 303
    [sent] = supplier.orders()
    assert reload(app, waiting).supplier_order_ref == sent["id"]
    assert audit(app)[-1].details["extra"]["replayed"] is True


@pytest.mark.parametrize(
    ("fault", "status", "says"),
    [
        ({"status": 503, "count": 3}, 502, "not reachable right now (HTTP 503"),
        ({"drop": True}, 502, "connection refused or dropped"),
        ({"delay": SUPPLIER_TIMEOUT + 0.5, "status": 503}, 504, "did not answer within"),
        ({"bad_reply": True, "after_effect": True}, 502, "could not be read"),
        ({"status": 429}, 503, "rate limiting"),
        ({"status": 400}, 422, "refused the order"),
    ],
    ids=["5xx", "down", "slow", "bad-reply", "429", "refused"],
)
def test_supplier_failures_are_clear_audited_and_leave_the_order_waiting(
    app, auth, client, supplier, waiting, fault, status, says
):
    supplier.add_fault(path_prefix="/v1/orders", **fault)
    auth.as_role("support")
    resp = submit(client, ACTION, waiting)
    assert resp.status_code == status
    assert says in resp.get_data(as_text=True)
    assert "Traceback" not in resp.get_data(as_text=True)
    assert reload(app, waiting).supplier_forwarded_at is None
    [failed] = audit(app)
    assert failed.outcome == "failed" and failed.details["extra"]["idempotency_key"]
    html = client.get("/suppliers").get_data(as_text=True)
    assert f"/actions/{ACTION}/{waiting}" in html and "failed" in html  # the retry path
    supplier.clear_faults()
    if status != 422:
        assert submit(client, ACTION, waiting).status_code == 303
        assert len(supplier.orders()) == 1


def test_an_order_without_a_supplier_cannot_be_forwarded(app, auth, client, supplier):
    with app.app_context():
        order = make_waiting_order(db.session())
        order.supplier_id = None
        db.session().commit()
    auth.as_role("support")
    page = client.get(f"/actions/{ACTION}/{order.external_id}").get_data(as_text=True)
    assert "has no supplier" in page
    assert supplier.orders() == []


def test_htmx_forward_from_the_supplier_queue_swaps_its_row(app, auth, client, supplier, waiting):
    auth.as_role("support")
    form = confirm_form(client, ACTION, waiting)
    form["next"] = "/suppliers"
    resp = submit(client, ACTION, waiting, form=form, htmx=True)
    assert resp.status_code == 200
    assert resp.headers["HX-Retarget"] == f"#row-order-{waiting}"
    html = resp.get_data(as_text=True)
    assert "Forwarded" in html and "Last forward attempt" not in html
    assert f'href="/actions/{ACTION}/' not in html  # forwarded: no button any more
    assert "next=/suppliers" in html  # the row's other buttons return to the queue
