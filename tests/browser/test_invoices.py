"""In Chromium: support retries a failed invoice from the queue."""

from __future__ import annotations

import pytest

from console import db
from console.demo.seed import seed
from tests.browser.conftest import axe_violations, describe, login, screenshot

pytestmark = pytest.mark.browser


def test_retry_now_from_the_invoice_queue(page, live_server, committed_app, stripe):
    with committed_app.app_context():
        seed(db.session(), volume=40)
    login(page, live_server, "support", next_url="/invoices/failed")
    assert page.locator("h1").inner_text() == "Failed and stuck invoices"
    screenshot(page, "invoices-support")
    violations = axe_violations(page)
    assert not violations, describe(violations)
    row = page.locator("#row-invoice-INV-DEMO-0003")
    row.get_by_role("link", name="Retry now").click()
    dialog = page.locator("#action-dialog")
    dialog.wait_for(state="visible")
    dialog.locator("textarea[name=reason]").fill("Provider fixed the API key; retrying now")
    dialog.get_by_role("button", name="Retry now").click()
    page.locator("#flash .flash-success", has_text="transmitted").wait_for()
    page.locator("#row-invoice-INV-DEMO-0003", has_text="transmitted").wait_for()
    page.goto(f"{live_server.url}/invoices/INV-DEMO-0003")
    assert "invoices:invoice:retry" in page.content()
    screenshot(page, "invoice-detail")
