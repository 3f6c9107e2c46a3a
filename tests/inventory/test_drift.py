"""Inventory drift (runbook 000): found, explained, corrected through the ledger."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from console import db
from console.audit.models import AuditEntry
from console.db import utcnow
from console.inventory.models import (
    InventoryItem,
    InventoryLedgerEntry,
    InventoryReservation,
    LedgerReason,
)
from tests.actions.helpers import confirm_form, hidden_fields, submit
from tests.factories import make_item


def state(app, sku: str) -> tuple[int, int, int]:
    """(stock_count, stored ledger total, the ledger's real SUM)."""
    with app.app_context():
        s = db.session()
        item = s.scalar(select(InventoryItem).where(InventoryItem.sku == sku))
        total = s.scalar(
            select(func.coalesce(func.sum(InventoryLedgerEntry.quantity_change), 0)).where(
                InventoryLedgerEntry.sku == sku
            )
        )
        return item.stock_count, item.ledger_total, int(total)


def entries(app, action: str) -> list[AuditEntry]:
    with app.app_context():
        return list(
            db.session().scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
            )
        )


@pytest.fixture
def drifting(app):
    """Stock shows 100, the ledger adds up to 95: +5 of drift."""
    with app.app_context():
        item = make_item(db.session(), stock=100, ledger=(120, -25))
        db.session().commit()
        return item.sku


def test_the_ledger_total_follows_the_ledger_and_cannot_be_overwritten(app):
    with app.app_context():
        s = db.session()
        item = make_item(s, stock=10, ledger=(10,))
        assert (item.ledger_total, item.drift_since) == (10, None)
        s.add(InventoryLedgerEntry(sku=item.sku, quantity_change=-3, reason=LedgerReason.SALE))
        s.flush()
        s.refresh(item)
        assert item.ledger_total == 7 and item.drift_since is not None  # stock still says 10
        s.execute(
            text("UPDATE inventory_items SET ledger_total = 10 WHERE sku = :s"), {"s": item.sku}
        )
        s.refresh(item)
        assert item.ledger_total == 7  # only ledger rows move it
        item.stock_count = 7
        s.flush()
        s.refresh(item)
        assert item.drift == 0 and item.drift_since is None


def test_drift_is_listed_with_both_numbers_and_corrected_through_the_ledger(
    app, auth, client, drifting
):
    auth.as_role("admin")
    page = client.get("/inventory/drift").get_data(as_text=True)
    assert f'id="row-inventory_item-{drifting}"' in page
    assert ">100<" in page and ">95<" in page and "+5" in page
    form = confirm_form(client, "inventory:stock:correct", drifting)
    assert 'value="5"' in client.get(f"/actions/inventory:stock:correct/{drifting}").get_data(
        as_text=True
    )  # the difference is the default
    resp = submit(
        client,
        "inventory:stock:correct",
        drifting,
        form=form,
        quantity="5",
        reason="Shelf count confirms 100 units",
    )
    assert resp.status_code == 303, resp.get_data(as_text=True)[:800]
    stock, stored, real = state(app, drifting)
    assert stock == stored == real == 100  # the sum matches after
    with app.app_context():
        [entry] = db.session().scalars(
            select(InventoryLedgerEntry).where(
                InventoryLedgerEntry.sku == drifting,
                InventoryLedgerEntry.reason == LedgerReason.MANUAL_CORRECTION,
            )
        )
        assert entry.quantity_change == 5 and entry.reference_id == "sub-admin-1"
    [audited] = entries(app, "inventory:stock:correct")
    assert audited.outcome == "success" and audited.actor_email == "admin@example.test"
    assert audited.details["before"] == {"stock_count": 100, "ledger_total": 95, "drift": 5}
    assert audited.details["after"] == {"stock_count": 100, "ledger_total": 100, "drift": 0}
    assert audited.details["extra"]["ledger_entry_id"] == entry.id
    client.get("/")  # consume the flash
    assert "No inventory drift." in client.get("/inventory/drift").get_data(as_text=True)
    item_page = client.get(f"/inventory/items/{drifting}").get_data(as_text=True)
    assert "inventory:stock:correct" in item_page and "Shelf count confirms" in item_page


def test_a_typed_amount_moves_the_stock_count_with_its_entry(app, auth, client, drifting):
    auth.as_role("admin")
    resp = submit(client, "inventory:stock:correct", drifting, quantity="-2")
    assert resp.status_code == 303
    assert state(app, drifting) == (93, 93, 93)


def test_the_preview_follows_the_typed_quantity(auth, client, drifting):
    auth.as_role("admin")
    url = f"/actions/inventory:stock:correct/{drifting}"
    preview = client.get(url, query_string={"preview": 1, "quantity": "3"}).get_data(as_text=True)
    assert "95 → 98" in preview and "100 → 98" in preview
    assert "<form" not in preview  # only the preview block
    assert "enter a quantity" in client.get(url, query_string={"preview": 1}).get_data(as_text=True)


def test_numbers_changed_since_the_page_was_rendered_is_409_and_nothing_written(
    app, auth, client, drifting
):
    auth.as_role("admin")
    form = confirm_form(client, "inventory:stock:correct", drifting)
    with app.app_context():  # the shop sells one meanwhile: both numbers move
        s = db.session()
        s.add(InventoryLedgerEntry(sku=drifting, quantity_change=-1, reason=LedgerReason.SALE))
        s.scalar(select(InventoryItem).where(InventoryItem.sku == drifting)).stock_count = 99
        s.commit()
    resp = submit(client, "inventory:stock:correct", drifting, form=form, quantity="5")
    assert resp.status_code == 409
    body = resp.get_data(as_text=True)
    assert "Nothing was changed" in body and "ledger total 95 → 94" in body
    assert state(app, drifting) == (99, 94, 94)
    with app.app_context():
        assert (
            not db.session()
            .scalars(
                select(InventoryLedgerEntry).where(
                    InventoryLedgerEntry.reason == LedgerReason.MANUAL_CORRECTION
                )
            )
            .all()
        )
    [failed] = entries(app, "inventory:stock:correct")
    assert failed.outcome == "failed"
    assert failed.details["extra"]["shown"] == {"ledger_total": 95, "stock_count": 100}
    # The re-rendered confirm step carries the new numbers: confirming again works.
    again = hidden_fields(body)
    resp = submit(client, "inventory:stock:correct", drifting, form=again, quantity="5")
    assert resp.status_code == 303
    assert state(app, drifting) == (99, 99, 99)


def test_a_correction_posted_by_someone_else_first_is_409(app, auth, client, drifting):
    auth.as_role("admin")
    form = confirm_form(client, "inventory:stock:correct", drifting)
    with app.app_context():
        s = db.session()
        s.add(InventoryLedgerEntry(sku=drifting, quantity_change=5, reason=LedgerReason.RETURN))
        s.commit()
    resp = submit(client, "inventory:stock:correct", drifting, form=form, quantity="5")
    assert resp.status_code == 409 and "already matches its ledger" in resp.get_data(as_text=True)
    assert state(app, drifting) == (100, 100, 100)


@pytest.mark.parametrize(
    ("quantity", "message"), [("-200", "below zero"), ("0", "changes nothing"), ("x", "")]
)
def test_impossible_corrections_are_refused_and_nothing_written(
    app, auth, client, drifting, quantity, message
):
    auth.as_role("admin")
    resp = submit(client, "inventory:stock:correct", drifting, quantity=quantity)
    assert resp.status_code == 422
    assert message in resp.get_data(as_text=True)
    assert state(app, drifting) == (100, 95, 95)


def test_support_cannot_correct_and_sees_no_button(auth, client, drifting):
    auth.as_role("support")
    assert "/actions/inventory:stock:correct/" not in client.get("/inventory/drift").get_data(
        as_text=True
    )
    assert (
        submit(
            client,
            "inventory:stock:correct",
            drifting,
            form={"csrf_token": auth.csrf_token(), "idempotency_key": "k" * 20},
        ).status_code
        == 403
    )


def test_htmx_correction_swaps_the_row(auth, client, drifting):
    auth.as_role("admin")
    resp = submit(client, "inventory:stock:correct", drifting, quantity="5", htmx=True)
    assert resp.status_code == 200
    assert resp.headers["HX-Retarget"] == f"#row-inventory_item-{drifting}"
    html = resp.get_data(as_text=True)
    assert "Resolved" in html and "/actions/inventory:stock:correct/" not in html


def test_queue_filters_sort_and_oldest_drift_first(app, auth, client):
    with app.app_context():
        s = db.session()
        old = make_item(s, sku="MUG-OLD", stock=50, ledger=(48,))  # +2
        big = make_item(s, sku="MUG-BIG", stock=10, ledger=(40,))  # -30
        other = make_item(s, sku="KETTLE-1", stock=5, ledger=(4,))  # +1
        s.execute(
            text("UPDATE inventory_items SET drift_since = :t WHERE sku = :s"),
            {"t": utcnow() - timedelta(days=2), "s": old.sku},
        )
        s.commit()
        skus = [old.sku, big.sku, other.sku]

    def listed(**args) -> list[str]:
        html = client.get("/inventory/drift", query_string=args).get_data(as_text=True)
        return [sku for sku in sorted(skus, key=html.find) if f"row-inventory_item-{sku}" in html]

    auth.as_role("support")
    assert listed()[0] == "MUG-OLD"  # the oldest drift first
    assert listed(sku="mug") == ["MUG-OLD", "MUG-BIG"]
    assert listed(min="2") == ["MUG-OLD", "MUG-BIG"]
    assert listed(min="3") == ["MUG-BIG"]
    assert listed(sort="drift", dir="desc") == ["MUG-BIG", "MUG-OLD", "KETTLE-1"]
    assert "No drifting item matches" in client.get("/inventory/drift?sku=NOPE").get_data(
        as_text=True
    )


def test_pending_reservations_and_last_entries_explain_the_drift(app, auth, client, drifting):
    with app.app_context():
        s = db.session()
        s.add(InventoryReservation(external_id="res-t-1", sku=drifting, quantity=2))
        s.commit()
    auth.as_role("support")
    html = client.get("/inventory/drift").get_data(as_text=True)
    assert "2 units in 1 reservation" in html
    assert "-25 sale" in html and "+120 restock" in html


def test_cli_lists_drift_read_only(app, drifting):
    runner = app.test_cli_runner()
    for args in (["inventory", "drift"], ["inventory", "drift", "--dry-run"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 0, result.output
        assert f"{drifting}: stock=100 ledger=95 drift=+5" in result.output
        assert "scanned=1 drifting=1" in result.output
    assert state(app, drifting) == (100, 95, 95)
