"""In Chromium: a support user replays an event and verifies a payment at Stripe."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from console import db
from console.demo.seed import seed
from console.orders.models import Order, OrderStatus
from tests.browser.conftest import axe_violations, describe, login, screenshot

pytestmark = pytest.mark.browser


@pytest.fixture
def demo_data(committed_app, stripe):
    with committed_app.app_context():
        seed(db.session(), volume=60)
    result = committed_app.test_cli_runner().invoke(args=["demo", "stripe-sync"])
    assert result.exit_code == 0, result.output


def status_of(app, external_id: str) -> OrderStatus:
    with app.app_context():
        return db.session().scalar(select(Order.status).where(Order.external_id == external_id))


def test_replay_and_verify_from_the_stuck_queue(page, live_server, committed_app, demo_data):
    login(page, live_server, "support", next_url="/orders/stuck")
    # Replay the failed event of ORD-DEMO-0002 (its automatic retries ran out).
    row = page.locator("#row-order-ORD-DEMO-0002")
    row.get_by_role("link", name="Replay event").click()
    dialog = page.locator("#action-dialog")
    dialog.wait_for(state="visible")
    assert "Dry run" in dialog.inner_text() and "paid -> confirmed" in dialog.inner_text()
    screenshot(page, "replay-dialog")
    violations = axe_violations(page)
    assert not violations, describe(violations)
    dialog.locator("textarea[name=reason]").fill("Worker crashed during the event; replaying")
    dialog.get_by_role("button", name="Replay event").click()
    page.locator("#flash .flash-success", has_text="replayed and processed").wait_for()
    assert status_of(committed_app, "ORD-DEMO-0002") == OrderStatus.CONFIRMED

    # Verify ORD-DEMO-0006 (pending, its retry succeeded at Stripe) and mark it paid.
    row = page.locator("#row-order-ORD-DEMO-0006")
    row.get_by_role("link", name="Verify with Stripe and mark paid").click()
    dialog.wait_for(state="visible")
    dialog.locator("textarea[name=reason]").fill("Customer's second card went through")
    dialog.get_by_role("button", name="Verify with Stripe and mark paid").click()
    page.locator("#flash .flash-success", has_text="Verified at Stripe").wait_for()
    page.locator("#row-order-ORD-DEMO-0006", has_text="Resolved").wait_for()
    screenshot(page, "stuck-after-verify")
    assert status_of(committed_app, "ORD-DEMO-0006") == OrderStatus.CONFIRMED

    # Both fixes are in the order's history and the audit log.
    page.goto(f"{live_server.url}/orders/ORD-DEMO-0006")
    assert "orders:payment:verify" in page.locator("#history-title + table").inner_text()


def test_without_javascript_the_confirm_page_works(browser, live_server, committed_app, demo_data):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    login(page, live_server, "support", next_url="/orders/stuck")
    page.locator("#row-order-ORD-DEMO-0004").get_by_role("link", name="Confirm reservation").click()
    assert "/actions/inventory:reservation:confirm/ORD-DEMO-0004" in page.url
    page.locator("textarea[name=reason]").fill("Payment verified; confirming stock by hand")
    page.get_by_role("button", name="Confirm reservation").click()
    page.wait_for_url("**/orders/stuck")
    assert "Confirmed 1 reservation" in page.locator("#flash").inner_text()
    context.close()
