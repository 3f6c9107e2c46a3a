"""In Chromium: support forwards a stuck order, an admin retries a failed sync (runbook 001)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from console import db
from console.demo.seed import seed
from console.orders.models import Order
from tests.browser.conftest import axe_violations, describe, login, screenshot

pytestmark = pytest.mark.browser


@pytest.fixture
def seeded(committed_app, supplier):
    with committed_app.app_context():
        seed(db.session(), volume=40)
    return supplier


def test_support_forwards_a_paid_order_to_the_supplier(page, live_server, seeded, committed_app):
    login(page, live_server, "support", next_url="/suppliers")
    assert page.locator("h1").inner_text() == "Supplier sync"
    main = page.locator("main").inner_text()
    assert "page 3 of 4" in main and "HTTP 502" in main  # the seeded failed sync
    screenshot(page, "suppliers-support")
    violations = axe_violations(page)
    assert not violations, describe(violations)
    assert page.get_by_role("link", name="Retry sync").count() == 0  # admin only

    row = page.locator("#row-order-ORD-DEMO-0005")
    row.get_by_role("link", name="Forward to supplier").click()
    dialog = page.locator("#action-dialog")
    dialog.wait_for(state="visible")
    assert "forward-ORD-DEMO-0005" in dialog.inner_text()
    dialog.locator("textarea[name=reason]").fill("Automatic forward failed overnight")
    dialog.get_by_role("button", name="Forward to supplier").click()
    page.locator("#flash .flash-success", has_text="forwarded to the supplier").wait_for()
    page.locator("#row-order-ORD-DEMO-0005", has_text="Forwarded").wait_for()
    screenshot(page, "suppliers-after-forward")
    [sent] = seeded.orders()
    assert sent["reference"] == "ORD-DEMO-0005"
    with committed_app.app_context():
        order = db.session().scalar(select(Order).where(Order.external_id == "ORD-DEMO-0005"))
        assert order.supplier_order_ref == sent["id"]


def test_admin_retries_the_failed_sync_from_its_page(page, live_server, seeded, start_worker):
    start_worker()
    login(page, live_server, "admin", next_url="/suppliers")
    page.get_by_role("link", name="Retry sync").click()
    dialog = page.locator("#action-dialog")
    dialog.wait_for(state="visible")
    assert "page 3 of 4" in dialog.inner_text()
    violations = axe_violations(page)
    assert not violations, describe(violations)
    dialog.locator("textarea[name=reason]").fill("Supplier says their API is back")
    dialog.get_by_role("button", name="Retry sync").click()
    page.locator("#flash .flash-success", has_text="started from page 3").wait_for()
    # The row polls the new run until it has finished.
    page.locator("main table", has_text="Retried").get_by_text("succeeded").first.wait_for()
    screenshot(page, "suppliers-after-retry")
    pages = [r["query"].get("page") for r in seeded.requests_log() if r["path"] == "/v1/products"]
    assert pages == ["3", "4"]
