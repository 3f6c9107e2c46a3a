"""The ingest API: round trips for every kind, stale updates, batches, keys, limits."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from console import db
from console.actions.models import IdempotencyRecord
from console.audit.models import AuditEntry
from console.db import utcnow
from console.integrations.models import ApiKey
from console.orders.models import Order, OrderStatus
from tests.actions.helpers import confirm_form
from tests.integrations.helpers import CHANGES, T0, bearer, iso, make_key, records

PROBLEM = "application/problem+json"


def audit(app, action: str, outcome: str | None = None) -> list[AuditEntry]:
    with app.app_context():
        stmt = select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
        if outcome:
            stmt = stmt.where(AuditEntry.outcome == outcome)
        return list(db.session().scalars(stmt))


def put(client, token, path, record):
    return client.put(f"/api/v1/{path}/{record['id']}", json=record, headers=bearer(token))


@pytest.fixture
def token(app) -> str:
    return make_key(app)


def test_round_trip_of_every_kind(app, client, token):
    recs = records("rt1")
    later = iso(T0 + timedelta(hours=1))
    prefix = token.split("_")[1]
    for path, record in recs.items():
        created = put(client, token, path, record)
        assert created.status_code == 201, (path, created.get_json())
        assert created.get_json()["result"]["result"] == "created"
        got = client.get(f"/api/v1/{path}/{record['id']}", headers=bearer(token))
        assert got.status_code == 200, path
        body = got.get_json()
        for field, value in record.items():
            if field in ("updated_at", "transmissions", "currency", "seller"):
                continue
            assert body[field] == value, (path, field, body[field], value)
        again = put(client, token, path, record)
        assert again.status_code == 200 and again.get_json()["result"]["result"] == "unchanged"
        if path in CHANGES:
            field, value = CHANGES[path]
            changed = put(client, token, path, {**record, field: value, "updated_at": later})
            assert changed.status_code == 200, (path, changed.get_json())
            assert changed.get_json()["result"]["result"] == "updated", path
            assert changed.get_json()["record"][field] == value
    # Every write is attributed to the key in the audit log, with before and after.
    entry = audit(app, "api:order:upsert", "success")[-1]
    assert entry.actor_sub == f"api-key:{prefix}"
    assert entry.details["before"]["customer_email"] == "brt1@example.com"
    assert entry.details["after"]["customer_email"] == "new@example.com"
    assert entry.details["extra"]["key_name"] == "storefront"
    assert len(audit(app, "api:payout:upsert", "success")) == 2


def test_a_ledger_movement_never_changes(app, client, token):
    recs = records("mv1")
    for path in ("inventory-items", "inventory-movements"):
        assert put(client, token, path, recs[path]).status_code == 201
    moved = {**recs["inventory-movements"], "quantity_change": 99}
    resp = put(client, token, "inventory-movements", moved)
    assert resp.status_code == 422 and resp.mimetype == PROBLEM
    assert resp.get_json()["errors"][0]["field"] == "id"


def test_stale_update_is_refused_and_changes_nothing(app, client, token):
    order = records("st1")["orders"]
    assert put(client, token, "orders", order).status_code == 201
    older = {**order, "amount": 9999, "updated_at": iso(T0 - timedelta(minutes=1))}
    resp = put(client, token, "orders", older)
    assert resp.status_code == 409
    assert resp.mimetype == PROBLEM
    body = resp.get_json()
    assert body["title"] == "Stale update" and body["status"] == 409
    assert body["result"]["held_updated_at"].startswith("2026-11-01T12:00")
    same_time_other_content = {**order, "amount": 9999}
    assert put(client, token, "orders", same_time_other_content).status_code == 409
    # With versions on both sides the version decides, whatever the clock says.
    v5 = {**order, "version": 5, "updated_at": iso(T0 + timedelta(hours=1)), "amount": 3000}
    assert put(client, token, "orders", v5).status_code == 200
    v4 = {**order, "version": 4, "updated_at": iso(T0 + timedelta(hours=2)), "amount": 1}
    assert put(client, token, "orders", v4).status_code == 409
    got = client.get("/api/v1/orders/ORD-st1", headers=bearer(token)).get_json()
    assert got["amount"] == 3000 and got["version"] == 5
    refused = audit(app, "api:order:upsert", "failed")
    assert len(refused) == 3 and refused[0].details["extra"]["refused"][0]["result"] == "stale"


def test_batch_reports_each_record_and_one_bad_record_blocks_nothing(app, client, token):
    good = records("b1")["orders"]
    also_good = records("b2")["orders"]
    existing = records("b3")["orders"]
    assert put(client, token, "orders", existing).status_code == 201
    bad_fields = {**records("b4")["orders"], "currency": "euro", "customer_email": "nope"}
    bad_ref_line = {**records("b5")["orders"], "lines": [{"sku": "X", "quantity": 0}]}
    stale = {**existing, "amount": 1, "updated_at": iso(T0 - timedelta(days=3))}
    batch = [good, bad_fields, stale, "not an object", bad_ref_line, also_good]
    resp = client.post("/api/v1/orders/batch", json={"records": batch}, headers=bearer(token))
    assert resp.status_code == 200
    body = resp.get_json()
    assert [r["result"] for r in body["results"]] == [
        "created", "invalid", "stale", "invalid", "invalid", "created"
    ]  # fmt: skip
    assert body["counts"] == {"created": 2, "updated": 0, "unchanged": 0, "stale": 1, "invalid": 3}
    fields = {e["field"] for e in body["results"][1]["errors"]}
    assert {"currency", "customer_email"} <= fields
    assert {e["field"] for e in body["results"][4]["errors"]} >= {"lines.0.quantity"}
    with app.app_context():
        s = db.session()
        ids = set(s.scalars(select(Order.external_id).where(Order.external_id.like("ORD-b%"))))
        assert ids == {"ORD-b1", "ORD-b2", "ORD-b3"}
        assert s.scalar(select(Order.amount).where(Order.external_id == "ORD-b3")) == 2500
    [refused] = audit(app, "api:order:upsert", "failed")
    assert [r["index"] for r in refused.details["extra"]["refused"]] == [1, 2, 3, 4]


def test_a_reference_to_a_missing_record_is_a_field_error(app, client, token):
    reservation = records("ref1")["inventory-reservations"]
    resp = put(client, token, "inventory-reservations", reservation)
    assert resp.status_code == 422
    assert resp.get_json()["errors"][0]["field"] == "sku"


def test_statuses_only_move_forward(app, client, token):
    order = records("fw1")["orders"]
    assert put(client, token, "orders", order).status_code == 201
    with app.app_context():  # support confirmed it in the console meanwhile
        s = db.session()
        s.scalar(select(Order).where(Order.external_id == "ORD-fw1")).status = OrderStatus.CONFIRMED
        s.commit()
    newer = {**order, "customer_email": "x@example.com", "updated_at": iso(T0 + timedelta(1))}
    resp = put(client, token, "orders", newer)
    assert resp.status_code == 200
    result = resp.get_json()["result"]
    assert result["result"] == "updated" and "not applied" in result["warnings"][0]
    assert resp.get_json()["record"]["status"] == "confirmed"


def test_batch_envelope_errors(app, client, token):
    h = bearer(token)
    assert client.post("/api/v1/orders/batch", json={"records": []}, headers=h).status_code == 422
    many = {"records": [records(str(i))["orders"] for i in range(501)]}
    resp = client.post("/api/v1/orders/batch", json=many, headers=h)
    assert resp.status_code == 422 and "501" in resp.get_json()["detail"]
    resp = client.post(
        "/api/v1/orders/batch", data="{nope", headers=h, content_type="application/json"
    )
    assert resp.status_code == 400 and resp.mimetype == PROBLEM
    resp = client.post("/api/v1/orders/batch", data="a=b", headers=h)
    assert resp.status_code == 415


def test_oversized_body_is_413(app, client, token):
    app.config["API_MAX_BODY_BYTES"] = 2000
    try:
        big = {"records": [records(str(i))["orders"] for i in range(20)]}
        resp = client.post("/api/v1/orders/batch", json=big, headers=bearer(token))
    finally:
        app.config["API_MAX_BODY_BYTES"] = 4 * 1024 * 1024
    assert resp.status_code == 413
    assert resp.mimetype == PROBLEM and resp.get_json()["status"] == 413


def test_keys_are_needed_and_checked(app, client):
    resp = client.get("/api/v1/orders/ORD-1")
    assert resp.status_code == 401 and resp.mimetype == PROBLEM
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    forged = "csk_abcdef012345_" + "x" * 43
    assert client.get("/api/v1/orders/ORD-1", headers=bearer(forged)).status_code == 401
    assert (
        client.get("/api/v1/orders/ORD-1", headers={"Authorization": "Basic x"}).status_code == 401
    )
    token = make_key(app)
    with app.app_context():  # only a hash of the token is stored
        import hashlib

        key = db.session().scalar(select(ApiKey).where(ApiKey.prefix == token.split("_")[1]))
        assert key.secret_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token.split("_", 2)[2] not in " ".join(str(v) for v in vars(key).values())


def test_scopes_limit_a_key_to_its_record_kinds(app, client):
    token = make_key(app, scopes=["orders"])
    recs = records("sc1")
    assert put(client, token, "orders", recs["orders"]).status_code == 201
    resp = put(client, token, "invoices", recs["invoices"])
    assert resp.status_code == 403 and resp.mimetype == PROBLEM
    assert resp.get_json()["required_scope"] == "invoices"
    assert client.get("/api/v1/invoices/INV-sc1", headers=bearer(token)).status_code == 403
    denied = audit(app, "api:invoice:upsert", "denied")
    assert denied and denied[0].actor_sub == "api-key:" + token.split("_")[1]


def _reveal(html: str) -> str:
    match = re.search(r'id="revealed-secret"[^>]*value="([^"]+)"', html)
    assert match, html[:1000]
    return match.group(1)


def test_admin_creates_rotates_and_revokes_keys(app, auth, client):
    auth.as_role("admin")
    form = confirm_form(client, "integrations:key:create", "shop")
    data = {**form, "reason": "Connect the storefront backend", "name": "storefront backend",
            "shop": "Tea shop", "scopes": ["orders", "invoices"]}  # fmt: skip
    resp = client.post("/actions/integrations:key:create/shop", data=data)
    assert resp.status_code == 200
    first = _reveal(resp.get_data(as_text=True))
    api = app.test_client()
    order = records("kr1")["orders"]
    assert put(api, first, "orders", order).status_code == 201
    # A repeated submit does not show the key again (shown once) and creates nothing.
    again = client.post("/actions/integrations:key:create/shop", data=data)
    assert "revealed-secret" not in again.get_data(as_text=True)
    with app.app_context():
        s = db.session()
        key = s.scalar(select(ApiKey).where(ApiKey.secret_hash.is_not(None)))
        assert key is not None and s.scalar(select(ApiKey.id).where(ApiKey.id != key.id)) is None
        key_id = key.id
        stored = " ".join(s.scalars(select(AuditEntry.canonical))) + " ".join(
            s.scalars(select(IdempotencyRecord.message))
        )
        assert first not in stored and first.split("_", 2)[2] not in stored

    form = confirm_form(client, "integrations:key:rotate", str(key_id))
    resp = client.post(
        f"/actions/integrations:key:rotate/{key_id}",
        data={**form, "reason": "Yearly rotation of the key", "overlap_hours": "1"},
    )
    assert resp.status_code == 200
    second = _reveal(resp.get_data(as_text=True))
    # Inside the overlap both keys work.
    assert api.get("/api/v1/orders/ORD-kr1", headers=bearer(first)).status_code == 200
    assert api.get("/api/v1/orders/ORD-kr1", headers=bearer(second)).status_code == 200
    with app.app_context():  # the overlap ends
        s = db.session()
        s.get(ApiKey, key_id).expires_at = utcnow() - timedelta(seconds=1)
        s.commit()
        new_id = s.scalar(select(ApiKey.id).where(ApiKey.rotated_from_id == key_id))
    resp = api.get("/api/v1/orders/ORD-kr1", headers=bearer(first))
    assert resp.status_code == 401 and resp.get_json()["title"] == "API key expired"
    assert api.get("/api/v1/orders/ORD-kr1", headers=bearer(second)).status_code == 200

    form = confirm_form(client, "integrations:key:revoke", str(new_id))
    resp = client.post(
        f"/actions/integrations:key:revoke/{new_id}",
        data={**form, "reason": "Key leaked in a log file"},
    )
    assert resp.status_code == 303
    resp = api.get("/api/v1/orders/ORD-kr1", headers=bearer(second))
    assert resp.status_code == 401 and resp.get_json()["title"] == "API key revoked"
    assert [e.outcome for e in audit(app, "integrations:key:revoke")] == ["success"]
    assert audit(app, "api:key:use", "denied")


def test_support_may_not_manage_keys(app, auth, client):
    auth.as_role("support")
    resp = client.post(
        "/actions/integrations:key:create/shop",
        data={"csrf_token": auth.csrf_token(), "reason": "trying my luck here",
              "idempotency_key": "k" * 20, "name": "x", "shop": "x", "scopes": ["orders"]},
    )  # fmt: skip
    assert resp.status_code == 403


def test_rate_limit_per_key_answers_429_with_retry_after(app, client):
    token = make_key(app)
    other = make_key(app)
    app.config["API_RATE_LIMIT"] = "3/minute"
    try:
        codes = [
            client.get("/api/v1/orders/ORD-none", headers=bearer(token)).status_code
            for _ in range(4)
        ]
        limited = client.get("/api/v1/orders/ORD-none", headers=bearer(token))
        fresh = client.get("/api/v1/orders/ORD-none", headers=bearer(other))
        # Someone who knows only the key's public prefix has a budget of their own.
        forged = token.rsplit("_", 1)[0] + "_" + "x" * 43
        spoofed = client.get("/api/v1/orders/ORD-none", headers=bearer(forged))
    finally:
        app.config["API_RATE_LIMIT"] = "1200/minute"
    assert codes[:3] == [404, 404, 404] and codes[3] == 429
    assert limited.status_code == 429 and limited.mimetype == PROBLEM
    assert int(limited.headers["Retry-After"]) > 0
    assert fresh.status_code == 404  # another key has its own budget
    assert spoofed.status_code == 401


def test_openapi_document_and_reference_page(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    paths = set(doc["paths"])
    for kind in (
        "orders",
        "inventory-reservations",
        "invoices",
        "payouts",
        "inventory-items",
        "inventory-movements",
        "coupons",
        "coupon-reservations",
        "supplier-sync-runs",
    ):
        assert f"/api/v1/{kind}/batch" in paths and f"/api/v1/{kind}/{{external_id}}" in paths
    put_op = doc["paths"]["/api/v1/orders/{external_id}"]["put"]
    assert "application/problem+json" in put_op["responses"]["409"]["content"]
    assert "OrderIn" in doc["components"]["schemas"]
    page = client.get("/api/v1/docs")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "PUT /api/v1/orders/{external_id}" in html
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert not re.search(r"<script[^>]+src=\"(https?:)?//", html)  # nothing from a CDN
