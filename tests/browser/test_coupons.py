"""In Chromium: support releases a coupon's leaked reservations (runbook 002)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from console import db
from console.coupons.models import Coupon
from console.demo.seed import seed
from tests.browser.conftest import axe_violations, describe, login, screenshot

pytestmark = pytest.mark.browser


def test_support_releases_expired_reservations_of_a_coupon(page, live_server, committed_app):
    with committed_app.app_context():
        seed(db.session(), volume=40)
    login(page, live_server, "support", next_url="/coupons/leaks")
    assert page.locator("h1").inner_text() == "Coupon reservation leaks"
    assert "last run 3 h" in page.locator("main").inner_text()  # the cron job's last run
    screenshot(page, "coupon-leaks-support")
    violations = axe_violations(page)
    assert not violations, describe(violations)
    # Support may release, not repair: the admin-only button is not shown.
    summer = page.locator("#row-coupon-SUMMER15")
    assert summer.get_by_role("link", name="Repair reserved count").count() == 0

    row = page.locator("#row-coupon-WELCOME10")
    row.get_by_role("link", name="Release expired reservations").click()
    dialog = page.locator("#action-dialog")
    dialog.wait_for(state="visible")
    assert "4 → 1" in dialog.locator("#action-preview").inner_text()
    violations = axe_violations(page)
    assert not violations, describe(violations)
    dialog.locator("textarea[name=reason]").fill("Expiry job was down overnight; releasing")
    dialog.get_by_role("button", name="Release expired reservations").click()
    page.locator("#flash .flash-success", has_text="Released 3 expired").wait_for()
    page.locator("#row-coupon-WELCOME10", has_text="Resolved").wait_for()
    screenshot(page, "coupon-leaks-after-release")
    with committed_app.app_context():
        coupon = db.session().scalar(select(Coupon).where(Coupon.code == "WELCOME10"))
        assert coupon.reserved_count == 1
    page.goto(f"{live_server.url}/coupons/WELCOME10")
    assert "coupons:reservation:release" in page.content()
    screenshot(page, "coupon-detail")
