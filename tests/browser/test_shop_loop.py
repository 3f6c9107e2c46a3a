"""In Chromium, across two servers: the reference shop pushes an order stuck in
`processing`, an admin fixes it in the console, and the shop's own page shows
the fix after the signed event was delivered."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from console import db
from console.integrations.delivery import deliver_due, new_secret, seal
from console.integrations.keys import SCOPES, issue_key
from console.integrations.models import DeliveryStatus, EventDelivery, WebhookEndpoint
from examples.shop.__main__ import seed_records
from examples.shop.app import ReferenceShop
from tests.browser.conftest import axe_violations, describe, login, screenshot
from tests.integrations.conftest import shop_db_url  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser


@pytest.fixture
def connected_shop(live_server, committed_app, shop_db_url):  # noqa: F811
    secret = new_secret()
    with committed_app.app_context():
        s = db.session()
        token = issue_key(
            s, name="reference shop", shop="Tea shop", scopes=list(SCOPES), actor_sub="setup"
        ).token
        s.commit()
    shop = ReferenceShop.start(
        database_url=shop_db_url, console_url=live_server.url, api_key=token,
        webhook_secret=secret,
    )  # fmt: skip
    with shop.store.connect() as conn:
        conn.execute("TRUNCATE shop_records, shop_console_events, shop_record_sequences")
    with committed_app.app_context():
        s = db.session()
        s.add(WebhookEndpoint(url=shop.webhook_url, secret_enc=seal(secret), created_by_sub="t"))
        s.commit()
    seed_records(shop.store)
    summary = shop.push()
    assert summary["orders"]["created"] == 4, summary
    assert summary["payouts"]["created"] == 1 and summary["invoices"]["created"] == 1
    yield shop
    shop.stop()


def test_a_fix_in_the_console_reaches_the_shop(
    page, live_server, committed_app, connected_shop, supplier
):
    """Support forwards the shop's stuck order through the supplier gateway; the shop hears."""
    shop = connected_shop
    login(page, live_server, "support", next_url="/orders/stuck")
    row = page.locator("#row-order-SHOP-1003")
    assert "not forwarded" in row.inner_text()
    row.get_by_role("link", name="Forward to supplier").click()
    dialog = page.locator("#action-dialog")
    dialog.wait_for(state="visible")
    dialog.locator("textarea[name=reason]").fill("The automatic forward failed at 10:02")
    dialog.get_by_role("button", name="Forward to supplier").click()
    page.locator("#flash .flash-success", has_text="SHOP-1003").wait_for()
    [sent] = supplier.orders()
    assert sent["reference"] == "SHOP-1003"

    with committed_app.app_context():
        report = deliver_due(db.session())
        assert report.acted == 1, report
        [delivery] = db.session().scalars(select(EventDelivery)).all()
        assert delivery.status == DeliveryStatus.SUCCEEDED

    page.goto(shop.url + "/")
    shop_row = page.locator("#shop-order-SHOP-1003")
    assert shop_row.locator(".supplier-ref").inner_text() == sent["id"]
    assert "order.forwarded_to_supplier SHOP-1003 #1: applied" in page.locator("main").inner_text()
    screenshot(page, "shop-after-console-fix")

    page.goto(f"{live_server.url}/integrations")
    deliveries = page.locator("#deliveries-title + form + table")
    assert "order.forwarded_to_supplier" in deliveries.inner_text()
    assert "succeeded" in deliveries.inner_text() and "HTTP 200" in deliveries.inner_text()
    screenshot(page, "integrations")
    violations = axe_violations(page)
    assert not violations, describe(violations)

    # The shop's next push carries the fix instead of undoing it.
    summary = shop.push()
    assert summary["orders"] == {"created": 0, "updated": 0, "unchanged": 1, "stale": 0,
                                 "invalid": 0}  # fmt: skip


def test_an_admin_creates_a_key_and_sees_it_once(page, live_server, committed_app):
    login(page, live_server, "admin", next_url="/integrations")
    page.get_by_role("link", name="Create API key").click()
    dialog = page.locator("#action-dialog")
    dialog.wait_for(state="visible")
    dialog.locator("input[name=name]").fill("storefront backend")
    dialog.locator("input[name=shop]").fill("Tea shop")
    dialog.get_by_label("orders").check()
    dialog.locator("textarea[name=reason]").fill("Connect the storefront backend")
    dialog.get_by_role("button", name="Create API key").click()
    secret = dialog.locator("#revealed-secret")
    secret.wait_for()
    token = secret.input_value()
    assert token.startswith("csk_")
    violations = axe_violations(page)
    assert not violations, describe(violations)
    screenshot(page, "integrations-key-created")
    dialog.get_by_role("link", name="I have copied it").click()
    page.wait_for_url(f"{live_server.url}/integrations*")
    assert token not in page.content()
    assert "storefront backend" in page.locator("#keys-title + table").inner_text()
