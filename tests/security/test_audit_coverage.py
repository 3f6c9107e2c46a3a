"""Every refused or failed attempt leaves an audit entry (issue 12, item 9).

Each test makes one kind of attempt fail the way an attacker, a careless
client or a crash would, and looks for the entry: who, what was attempted,
why it failed. Figure: 0 refused or failed attempts without their entry.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import select

from console import db
from console.actions.framework import REGISTRY, Action, Outcome, declare
from console.audit.models import AuditEntry
from console.orders.actions import load_order, order_snapshot, order_url
from console.orders.models import Order, OrderNote, OrderStatus
from console.security.permissions import Permission
from tests.actions.helpers import confirm_form, submit
from tests.conftest import AuthActions, libpq
from tests.factories import make_order


def entries(app, **where) -> list[AuditEntry]:
    with app.app_context():
        stmt = select(AuditEntry).order_by(AuditEntry.seq)
        for column, value in where.items():
            stmt = stmt.where(getattr(AuditEntry, column) == value)
        return list(db.session().scalars(stmt))


def notes(app, external_id: str) -> int:
    with app.app_context():
        order = db.session().scalar(select(Order).where(Order.external_id == external_id))
        return len(order.notes)


@pytest.fixture
def order(app) -> str:
    with app.app_context():
        o = make_order(db.session())
        db.session().commit()
        return o.external_id


# ---------------------------------------------------------------- CSRF


def test_csrf_failure_on_an_action_is_audited(app, auth, client, order):
    auth.as_role("support")
    form = confirm_form(client, "orders:note:add", order)
    form["csrf_token"] = "forged"
    resp = submit(client, "orders:note:add", order, form=form)
    assert resp.status_code == 400 and notes(app, order) == 0
    [e] = entries(app, action="security:csrf:denied")
    assert e.outcome == "denied" and e.actor_email == "support@example.test"
    assert e.target_type == "order" and e.target_id == order
    assert e.details["extra"]["attempted"] == "orders:note:add"
    assert e.details["extra"]["method"] == "POST"


def test_csrf_failure_on_logout_is_audited(app, auth, client):
    auth.as_role("admin")
    resp = client.post("/logout", data={})
    assert resp.status_code == 400
    [e] = entries(app, action="security:csrf:denied")
    assert e.target_type == "page" and e.target_id == "/logout"
    assert "missing" in e.details["extra"]["why"].lower()


# ---------------------------------------------------------------- 409 contention


def test_row_held_by_another_action_is_409_and_audited(committed_app, pg_url, idp):
    with committed_app.app_context():
        external_id = make_order(db.session()).external_id
        db.session().commit()
    client = committed_app.test_client()
    AuthActions(client, idp).as_role("support")
    form = confirm_form(client, "orders:note:add", external_id)
    with psycopg.connect(libpq(pg_url)) as other:
        other.execute("SELECT id FROM orders WHERE external_id = %s FOR UPDATE", (external_id,))
        resp = submit(client, "orders:note:add", external_id, form=form)
    assert resp.status_code == 409 and "Someone else is acting" in resp.get_data(as_text=True)
    assert notes(committed_app, external_id) == 0
    [e] = entries(committed_app, action="orders:note:add")
    assert e.outcome == "failed" and e.target_id == external_id
    assert e.details["extra"]["http_status"] == 409
    assert "lock not available" in e.details["extra"]["error"]
    assert e.reason == "Customer called, see ticket"


# ---------------------------------------------------------------- pages a role may not see


def test_a_refused_address_is_400_and_recorded_made_storable(app, auth, client):
    """A NUL in the query: 400 before any page runs, and one entry with the query (NUL gone)."""
    auth.as_role("support")
    resp = client.get("/audit/export?actor=%00mallory&action=orders:*")
    assert resp.status_code == 400
    [e] = entries(app, action="page:request:refused")
    assert e.outcome == "failed" and e.target_id == "/audit/export"
    assert "mallory" in e.details["extra"]["query"] and "\x00" not in str(e.details)


def test_denied_page_view_records_the_path_and_query(app, auth, client):
    auth.as_role("support")
    resp = client.get("/audit/export?actor=mallory&action=orders:*")
    assert resp.status_code == 403
    [e] = entries(app, action="page:view:denied")
    assert e.outcome == "denied" and e.target_id == "/audit/export"
    assert e.details["extra"]["needs"] == "audit:log:export"
    assert "mallory" in e.details["extra"]["query"]


@pytest.mark.parametrize(
    "path", ["/audit", "/audit/1", "/audit/export", "/audit/export/verify_bundle.py"]
)
def test_every_audit_page_denied_to_support_is_audited(app, auth, client, path):
    auth.as_role("support")
    assert client.get(path).status_code == 403
    assert [e.target_id for e in entries(app, action="page:view:denied")] == [path]


# ---------------------------------------------------------------- access to the log itself


def test_every_access_to_the_audit_log_is_itself_an_entry(app, auth, client):
    auth.as_role("auditor")
    assert client.get("/audit").status_code == 200
    assert client.get("/audit?actor=auditor@example.test&action=auth:*").status_code == 200
    first = entries(app)[0].seq
    assert client.get(f"/audit/{first}").status_code == 200
    assert client.get("/audit/export?outcome=denied").status_code == 200
    assert client.get("/audit/export/download?format=jsonl&outcome=denied").status_code == 200
    assert client.get("/audit/export/verify_bundle.py").status_code == 200
    got = [
        (e.action, e.outcome, e.target_type, e.target_id, e.details["params"])
        for e in entries(app, actor_email="auditor@example.test")
        if e.action.startswith("audit:")
    ]
    assert got == [
        ("audit:log:view", "success", "audit_log", None, {}),
        (
            "audit:log:view",
            "success",
            "audit_log",
            None,
            {"actor": "auditor@example.test", "action": "auth:*"},
        ),
        ("audit:entry:view", "success", "audit_entry", str(first), {}),
        ("audit:export_page:view", "success", "audit_log", None, {"outcome": "denied"}),
        (
            "audit:log:export",
            "success",
            "audit_log",
            got[4][3],
            {"format": "jsonl", "outcome": "denied"},
        ),
        ("audit:verifier:download", "success", "audit_log", None, {}),
    ]
    # Those views have a target type and no id: their rows say so, not "None".
    page = client.get("/audit?action=audit:log:view").get_data(as_text=True)
    assert "audit_log" in page and "<code>None</code>" not in page


def test_failed_reads_of_the_audit_log_are_entries_too(app, auth, client):
    auth.as_role("auditor")
    assert client.get("/audit?since=not-a-date").status_code == 400
    assert client.get("/audit/999999").status_code == 404
    assert client.get("/audit/export/download?until=soon").status_code == 400
    failed = [
        (e.action, e.details["extra"]["status"], e.target_id)
        for e in entries(app, outcome="failed")
    ]
    assert failed == [
        ("audit:log:view", 400, None),
        ("audit:entry:view", 404, "999999"),
        ("audit:log:export", 400, None),
    ]


# ---------------------------------------------------------------- input that cannot be stored


def test_reason_with_a_nul_byte_is_refused_and_recorded_sanitised(app, auth, client, order):
    auth.as_role("support")
    resp = submit(client, "orders:note:add", order, reason="Called about\x00 the parcel")
    assert resp.status_code == 422 and notes(app, order) == 0
    assert "control characters" in resp.get_data(as_text=True)
    [e] = entries(app, action="orders:note:add")
    assert e.outcome == "failed" and e.details["extra"]["http_status"] == 422
    assert e.reason == "Called about\ufffd the parcel"
    assert e.details["extra"]["sanitised"] == ["reason"]
    assert "reason" in e.details["extra"]["fields"]


def test_invalid_form_is_recorded_with_what_was_typed(app, auth, client, order):
    auth.as_role("support")
    resp = submit(client, "orders:note:add", order, reason="ok")
    assert resp.status_code == 422
    [e] = entries(app, action="orders:note:add")
    assert e.outcome == "failed" and e.reason == "ok" and "reason" in e.details["extra"]["fields"]


@pytest.mark.parametrize(
    "target", ["x" * 300, "ORD\x00evil", "ORD\x1b[31mred"], ids=["long", "nul", "ansi"]
)
def test_unstorable_target_ids_are_refused_and_recorded(app, auth, client, order, target):
    auth.as_role("support")
    csrf = auth.csrf_token()
    resp = client.post(
        f"/actions/orders:note:add/{target}",
        data={"csrf_token": csrf, "reason": "Customer called, see ticket"},
    )
    # A NUL is refused before any page runs (400); the others name no order (404).
    assert resp.status_code == (400 if "\x00" in target else 404)
    action = "page:request:refused" if "\x00" in target else "page:request:failed"
    [e] = entries(app, action=action)
    assert e.outcome == "failed" and e.actor_email == "support@example.test"
    assert e.target_id.startswith(("orders:note:add/", "/actions/orders:note:add/"))
    assert "\x00" not in e.target_id and len(e.target_id) <= 128
    if target != "ORD\x1b[31mred":
        assert e.details["extra"]["sanitised"] == ["target.id"]


def test_long_denied_path_is_cut_not_lost(app, auth, client):
    auth.as_role("support")
    path = "/audit/export/" + "z" * 400
    client.get(path)  # 404 for everyone: not a permission question
    long_query = "/audit?actor=" + "q" * 3000
    assert client.get(long_query).status_code == 403
    [e] = entries(app, action="page:view:denied")
    assert len(e.details["extra"]["query"]) == 500


# ---------------------------------------------------------------- crashes outside the effect


def _note_effect(ctx, order: Order) -> Outcome:
    ctx.session.add(OrderNote(order_id=order.id, body="x", author_sub=ctx.user.sub))
    return Outcome("noted")


def _exit_effect(ctx, order: Order) -> Outcome:
    order.status = OrderStatus.CANCELLED
    ctx.session.flush()
    raise SystemExit(1)  # what a gunicorn worker timeout raises in the request


def _bad_params(form) -> dict:
    raise OverflowError("cannot convert Infinity to integer")


def _test_action(name: str, effect, **kw) -> Action[Order]:
    return Action[Order](
        name=name,
        label="Test action",
        permission=Permission.ORDERS_NOTE_ADD,
        target_type="order",
        load=kw.pop("load", load_order),
        precondition=lambda o: None,
        describe=lambda o: [("Order", o.external_id)],
        effect=effect,
        snapshot=order_snapshot,
        return_url=order_url,
        **kw,
    )


@pytest.fixture
def crashing_actions() -> Iterator[None]:
    def load_then_crash(s, key, lock):
        if lock:
            return load_order(s, key, lock)
        raise RuntimeError("the loader broke before the framework ran")

    declared = [
        declare(_test_action("tests:crash:params", _note_effect, params=_bad_params)),
        declare(_test_action("tests:crash:exit", _exit_effect)),
        declare(_test_action("tests:crash:view", _note_effect, load=load_then_crash)),
    ]
    yield
    for action in declared:
        REGISTRY.pop(action.name, None)


def test_crash_computing_parameters_is_audited(app, auth, client, order, crashing_actions):
    auth.as_role("support")
    resp = submit(client, "tests:crash:params", order)
    assert resp.status_code == 500 and notes(app, order) == 0
    [e] = entries(app, action="tests:crash:params")
    assert e.outcome == "failed" and "OverflowError" in e.details["extra"]["error"]
    assert f"audit entry #{e.seq}" in resp.get_data(as_text=True)


def test_worker_killed_inside_the_effect_is_audited(app, auth, client, order, crashing_actions):
    auth.as_role("support")
    form = confirm_form(client, "tests:crash:exit", order)
    with pytest.raises(SystemExit):
        submit(client, "tests:crash:exit", order, form=form)
    [e] = entries(app, action="tests:crash:exit")
    assert e.outcome == "failed" and "interrupted: SystemExit" in e.details["extra"]["error"]
    with app.app_context():
        status = db.session().scalar(select(Order.status).where(Order.external_id == order))
    assert status == OrderStatus.PAID  # the change was rolled back


def test_crash_in_the_view_before_the_framework_is_audited(
    app, auth, client, order, crashing_actions
):
    auth.as_role("support")
    csrf = auth.csrf_token()
    resp = client.post(
        f"/actions/tests:crash:view/{order}",
        data={"csrf_token": csrf, "reason": "Customer called, see ticket"},
    )
    assert resp.status_code == 500
    [e] = entries(app, action="tests:crash:view")
    assert e.outcome == "failed" and e.target_id == order
    assert "the loader broke" in e.details["extra"]["error"]
    assert e.actor_email == "support@example.test"


def test_failed_page_request_is_audited_with_its_path(app, auth, client, monkeypatch):
    """Any unhandled error on any page is an entry, not only on actions."""
    import console.ops.views as ops_views

    def broken(*args, **kwargs):
        raise RuntimeError("job table unreadable")

    monkeypatch.setattr(ops_views, "job_health", broken)
    auth.as_role("admin")
    assert client.get("/ops/jobs").status_code == 500
    [e] = entries(app, action="page:request:failed")
    assert e.target_id == "/ops/jobs" and "job table unreadable" in e.details["extra"]["error"]


def test_concurrent_contention_never_loses_an_entry(committed_app, idp):
    """Ten people press the same button at once: one note, and ten entries."""
    with committed_app.app_context():
        external_id = make_order(db.session()).external_id
        db.session().commit()
    clients = []
    for i in range(10):
        c = committed_app.test_client()
        AuthActions(c, idp).as_role("support")
        clients.append((c, confirm_form(c, "orders:note:add", external_id), i))
    barrier = threading.Barrier(len(clients))
    statuses: list[int] = []

    def press(c, form, i) -> None:
        barrier.wait()
        # Each a different note (the same reason twice would be a recognised repeat).
        reason = f"Customer called again, window {i}"
        statuses.append(
            submit(c, "orders:note:add", external_id, form=form, reason=reason).status_code
        )

    threads = [threading.Thread(target=press, args=pair) for pair in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    note_entries = entries(committed_app, action="orders:note:add")
    assert len(note_entries) == len(statuses) == 10
    successes = [e for e in note_entries if e.outcome == "success"]
    assert len(successes) == statuses.count(303) == notes(committed_app, external_id)
    assert all(
        e.details["extra"]["http_status"] == 409 for e in note_entries if e.outcome != "success"
    )
