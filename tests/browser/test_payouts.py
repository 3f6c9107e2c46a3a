"""In Chromium: one admin requests a release, a second approves it, the transfer shows."""

from __future__ import annotations

import pytest

from console import db
from tests.browser.conftest import axe_violations, describe, login, screenshot
from tests.factories import make_payout

pytestmark = pytest.mark.browser


def test_request_in_one_session_approve_in_another(
    browser, live_server, committed_app, stripe, stripe_client
):
    with committed_app.app_context():
        s = db.session()
        payout = make_payout(s, amount=18000)
        s.commit()
    stripe_client.v1.accounts.create({"type": "express", "id": payout.destination_account})

    first = browser.new_context(bypass_csp=True).new_page()
    login(first, live_server, "admin", next_url="/payouts/ready")
    screenshot(first, "payouts-ready")
    violations = axe_violations(first)
    assert not violations, describe(violations)
    first.locator(f"#row-payout-{payout.external_id}").get_by_role(
        "link", name="Request release"
    ).click()
    dialog = first.locator("#action-dialog")
    dialog.wait_for(state="visible")
    dialog.locator("textarea[name=reason]").fill("Auto-release failed twice; releasing by hand")
    dialog.get_by_role("button", name="Request release").click()
    first.locator("#flash .flash-success", has_text="requested").wait_for()
    first.goto(f"{live_server.url}/approvals")
    assert "another admin must approve" in first.content()

    second = browser.new_context(bypass_csp=True).new_page()
    login(second, live_server, "admin2", next_url="/approvals")
    screenshot(second, "approvals-admin2")
    violations = axe_violations(second)
    assert not violations, describe(violations)
    second.get_by_role("link", name="Approve and release").click()
    dialog = second.locator("#action-dialog")
    dialog.wait_for(state="visible")
    assert "180.00 EUR" in dialog.inner_text()
    dialog.locator("textarea[name=reason]").fill("Order delivered, protection over: approved")
    dialog.get_by_role("button", name="Approve and release").click()
    second.locator("#flash .flash-success", has_text="Approved and released 1 of 1").wait_for()
    transfer_id = second.locator("#flash").inner_text().split("(")[1].split(")")[0]
    assert transfer_id.startswith("tr_")

    second.goto(f"{live_server.url}/payouts/{payout.external_id}")
    assert transfer_id in second.content()
    second.goto(f"{live_server.url}/audit?action=payouts:payout:release")
    assert payout.external_id in second.content()
    screenshot(second, "payout-released-audit")
