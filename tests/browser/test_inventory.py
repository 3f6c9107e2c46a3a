"""In Chromium: an admin posts a drift correction from the inventory queue (runbook 000)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from console import db
from console.demo.seed import seed
from console.inventory.models import InventoryItem, InventoryLedgerEntry
from tests.browser.conftest import axe_violations, describe, login, screenshot

pytestmark = pytest.mark.browser


def test_admin_posts_a_correction_with_a_live_preview(page, live_server, committed_app):
    with committed_app.app_context():
        seed(db.session(), volume=40)
        item = db.session().scalar(select(InventoryItem).where(InventoryItem.sku == "SKU-0007"))
        stock, ledger = item.stock_count, item.ledger_total
    login(page, live_server, "admin", next_url="/inventory/drift")
    assert page.locator("h1").inner_text() == "Inventory drift"
    # Oldest drift first: SKU-0007 drifted three days ago, SKU-0013 yesterday.
    skus = page.locator("tbody tr td:first-child").all_inner_texts()
    assert skus == ["SKU-0007", "SKU-0013"]
    screenshot(page, "inventory-drift-admin")
    violations = axe_violations(page)
    assert not violations, describe(violations)

    page.locator("#row-inventory_item-SKU-0007").get_by_role("link", name="Post correction").click()
    dialog = page.locator("#action-dialog")
    dialog.wait_for(state="visible")
    quantity = dialog.locator("input[name=quantity]")
    assert quantity.input_value() == str(stock - ledger)
    preview = dialog.locator("#action-preview")
    assert f"{stock} → {stock}" in preview.inner_text()  # the default keeps the stock count
    quantity.fill("2")
    preview.get_by_text(f"{ledger} → {ledger + 2}").first.wait_for()  # the preview follows
    violations = axe_violations(page)
    assert not violations, describe(violations)
    quantity.fill(str(stock - ledger))
    preview.get_by_text(f"{stock} → {stock}").first.wait_for()
    dialog.locator("textarea[name=reason]").fill("Shelf count on Monday confirms 5 more mugs")
    screenshot(page, "inventory-correction-dialog")
    dialog.get_by_role("button", name="Post correction").click()
    page.locator("#flash .flash-success", has_text="Correction posted for SKU-0007").wait_for()
    page.locator("#row-inventory_item-SKU-0007", has_text="Resolved").wait_for()
    screenshot(page, "inventory-drift-after-correction")

    page.goto(f"{live_server.url}/inventory/items/SKU-0007")
    content = page.content()
    assert "inventory:stock:correct" in content and "manual_correction" in content
    assert "sub-admin-1" in content  # the ledger entry references the acting admin
    screenshot(page, "inventory-item")
    with committed_app.app_context():
        s = db.session()
        total = s.scalar(
            select(func.sum(InventoryLedgerEntry.quantity_change)).where(
                InventoryLedgerEntry.sku == "SKU-0007"
            )
        )
        assert (
            total
            == stock
            == s.scalar(select(InventoryItem.stock_count).where(InventoryItem.sku == "SKU-0007"))
        )
