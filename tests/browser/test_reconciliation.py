"""In Chromium: run reconciliation, open a finding, fix it, see it closed."""

from __future__ import annotations

import pytest

from devtools.stripe_double import create_succeeded_payment_intent
from tests.browser.conftest import axe_violations, describe, login, screenshot

pytestmark = pytest.mark.browser


def test_run_open_a_finding_fix_it(
    page, live_server, committed_app, stripe, stripe_client, start_worker
):
    """A worker process runs it; the finished run brings its findings without a reload."""
    stripe.reset()
    start_worker()
    orphan = create_succeeded_payment_intent(
        stripe_client, amount=4200, currency="eur", metadata={"order_id": "ORD-BROWSER-1"}
    )
    login(page, live_server, "admin", next_url="/reconciliation")
    page.get_by_role("link", name="Run reconciliation").click()
    dialog = page.locator("#action-dialog")
    dialog.wait_for(state="visible")
    dialog.locator("textarea[name=reason]").fill("After the webhook outage this morning")
    dialog.get_by_role("button", name="Run reconciliation").click()
    page.locator("#flash .flash-success", has_text="started").wait_for()
    page.locator("tr[id^=run-]", has_text="succeeded").first.wait_for(timeout=20000)
    # No reload: the finished run swapped the findings list in.
    page.get_by_role("link", name="stripe paid no order").wait_for(timeout=5000)
    screenshot(page, "reconciliation-admin")
    violations = axe_violations(page)
    assert not violations, describe(violations)
    page.get_by_role("link", name="stripe paid no order").click()
    assert orphan.id in page.content()
    page.get_by_role("link", name="Create the missing order").click()
    dialog.wait_for(state="visible")
    dialog.locator("textarea[name=reason]").fill("Order lost when the webhook failed")
    dialog.get_by_role("button", name="Create the missing order").click()
    page.locator("#flash .flash-success", has_text="ORD-BROWSER-1").wait_for()
    assert "fixed" in page.locator("h1").inner_text()
    screenshot(page, "finding-fixed")
