"""An audit reviewer narrows the log to a person and a time window, then exports it."""

from __future__ import annotations

import json
import tarfile
from datetime import UTC, datetime, timedelta

import pytest

pytestmark = [pytest.mark.demo, pytest.mark.browser, pytest.mark.timeout(600)]


def test_auditor_filters_by_actor_and_window_then_exports(walk, tmp_path):
    w = walk("auditor")
    p = w.page
    p.get_by_role("link", name="Audit log", exact=True).click()
    p.locator("table tbody tr").first.wait_for()
    w.step("audit log")

    today = datetime.now(UTC).date()
    p.fill("#f-actor", w.who)
    p.fill("#f-since", today.isoformat())
    p.fill("#f-until", (today + timedelta(days=1)).isoformat())
    p.get_by_role("button", name="Filter").click()
    p.wait_for_load_state()
    rows = p.locator("table tbody tr")
    rows.first.wait_for()
    w.step("my entries today")
    texts = rows.all_inner_texts()
    assert texts and all(w.who in t for t in texts), texts
    assert any("auth:login" in t for t in texts), texts  # this walk's own sign-in
    assert not any("None" in t for t in texts), texts  # a view of the log has no target id
    assert f"actor={w.who.replace('@', '%40')}" in p.url and f"since={today}" in p.url

    # A window with nothing in it says so, and how to widen it.
    p.fill("#f-since", (today + timedelta(days=1)).isoformat())
    p.fill("#f-until", (today + timedelta(days=2)).isoformat())
    p.get_by_role("button", name="Filter").click()
    p.wait_for_load_state()
    assert "No audit entries match." in p.inner_text("main")
    w.step("empty window")
    p.go_back()
    p.wait_for_load_state()

    p.get_by_role("link", name="Export this selection").click()
    p.wait_for_load_state()
    assert p.input_value("#x-actor") == w.who and p.input_value("#x-since") == today.isoformat()
    w.step("export")
    with p.expect_download() as download:
        p.get_by_role("button", name="Download signed bundle").click()
    bundle = tmp_path / download.value.suggested_filename
    download.value.save_as(bundle)
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
        assert "audit-export/manifest.sig" in names, names
        data = tar.extractfile("audit-export/audit.jsonl")
        assert data is not None
        exported = [json.loads(line) for line in data.read().decode().splitlines() if line]
    # Exactly the selection: this person's entries of today, each with its hash.
    assert exported and all(e["entry"]["actor"]["email"] == w.who for e in exported), exported[:2]
    assert all(e["entry"]["ts"].startswith(today.isoformat()) and e["hash"] for e in exported)
