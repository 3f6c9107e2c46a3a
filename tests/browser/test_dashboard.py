"""A person signs in through the IdP in Chromium and sees the dashboard."""

from __future__ import annotations

import pytest

from console import db
from console.demo.seed import seed
from tests.browser.conftest import axe_violations, describe, login, screenshot

pytestmark = pytest.mark.browser


@pytest.fixture
def seeded(committed_app):
    with committed_app.app_context():
        seed(db.session(), volume=150)
        db.session().commit()


def test_support_signs_in_and_sees_the_dashboard(page, live_server, seeded):
    login(page, live_server, "support")
    assert page.title().startswith("Dashboard")
    cards = page.locator(".card")
    assert cards.count() == 10
    stuck = page.locator(".card", has_text="Stuck orders").locator(".count").inner_text()
    assert int(stuck) > 0
    screenshot(page, "dashboard-support")
    violations = axe_violations(page)
    assert not violations, describe(violations)


def test_keyboard_reaches_the_stuck_orders_card(page, live_server, seeded):
    login(page, live_server, "admin")
    page.keyboard.press("Tab")  # skip link first
    assert page.evaluate("document.activeElement.textContent").strip() == "Skip to content"
    page.get_by_role("link", name="Stuck orders").first.click()
    page.wait_for_url("**/orders/stuck")
    assert page.locator("h1").inner_text() == "Stuck orders"
    violations = axe_violations(page)
    assert not violations, describe(violations)
    screenshot(page, "stuck-orders-admin")


def test_add_note_through_the_dialog(page, live_server, seeded):
    login(page, live_server, "support", next_url="/orders/stuck")
    first_row = page.locator("tbody tr").first
    order_id = first_row.locator("td a").first.inner_text()
    first_row.get_by_role("link", name="Add note").click()
    dialog = page.locator("#action-dialog")
    dialog.wait_for(state="visible")
    violations = axe_violations(page)
    assert not violations, describe(violations)
    dialog.locator("textarea[name=reason]").fill("Customer phoned: paid twice, checking")
    screenshot(page, "add-note-dialog")
    dialog.get_by_role("button", name="Add note").click()
    page.locator("#flash .flash-success").wait_for()
    assert f"Note added to order {order_id}" in page.locator("#flash").inner_text()
    page.goto(f"{live_server.url}/orders/{order_id}")
    assert "Customer phoned: paid twice, checking" in page.content()


def test_auditor_signs_in_and_sees_the_audit_log(page, live_server, seeded):
    login(page, live_server, "auditor", next_url="/audit")
    assert page.locator("h1").inner_text() == "Audit log"
    assert page.locator("tbody tr").count() >= 1
    violations = axe_violations(page)
    assert not violations, describe(violations)
    screenshot(page, "audit-auditor")


def test_pages_run_under_the_csp_without_errors(strict_page, live_server, seeded):
    """htmx and the dialog work with a CSP that allows no inline script or eval."""
    page = strict_page
    login(page, live_server, "support", next_url="/orders/stuck")
    page.locator("tbody tr").first.get_by_role("link", name="Add note").click()
    page.locator("#action-dialog").wait_for(state="visible")
    page.keyboard.press("Escape")
    page.goto(f"{live_server.url}/")
    errors = [e for e in page.console_errors if "favicon" not in e]
    assert not errors, errors
