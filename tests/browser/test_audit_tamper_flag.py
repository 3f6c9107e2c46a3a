"""The audit pages in Chromium: a row changed behind the console's back is flagged, accessibly."""

from __future__ import annotations

import psycopg
import pytest

from tests.audit.test_export_verify import fill
from tests.browser.conftest import axe_violations, describe, login, screenshot
from tests.conftest import libpq

pytestmark = pytest.mark.browser


def test_tampered_row_is_flagged_on_the_list_and_the_entry(
    page, live_server, committed_app, pg_owner_url
):
    fill(committed_app, 6)
    with psycopg.connect(libpq(pg_owner_url)) as conn:
        conn.execute("ALTER TABLE audit_entries DISABLE TRIGGER USER")
        conn.execute("UPDATE audit_entries SET reason = 'nothing to see here' WHERE seq = 3")
        conn.execute("ALTER TABLE audit_entries ENABLE TRIGGER USER")
    login(page, live_server, "auditor", "/audit?target_type=order")
    alert = page.get_by_role("alert").first
    assert "1 entry differs from what was hashed" in alert.inner_text()
    assert page.locator("tr.tampered").count() == 1
    assert axe_violations(page) == [], describe(axe_violations(page))
    screenshot(page, "audit-tampered-list")
    page.goto(f"{live_server.url}/audit/3")
    assert "This entry differs from what was hashed" in page.content()
    assert axe_violations(page) == [], describe(axe_violations(page))
    screenshot(page, "audit-tampered-entry")
    page.goto(f"{live_server.url}/audit/export")
    assert page.get_by_role("link", name="verify_bundle.py").count() == 1
    assert axe_violations(page) == [], describe(axe_violations(page))
    screenshot(page, "audit-export-page")
