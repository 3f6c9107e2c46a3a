"""The payout pages say what a payout waits for, in the runbook's words (runbook 003)."""

from __future__ import annotations

import re
from datetime import timedelta

from console import db
from console.db import utcnow
from console.payouts.models import PayoutStatus
from tests.factories import make_payout


def _row(page: str, external_id: str) -> str:
    match = re.search(rf'<tr id="row-payout-{external_id}">(.*?)</tr>', page, re.S)
    assert match, f"no row for {external_id}"
    return match.group(1)


def test_ready_and_blocked_tabs_name_the_state_not_the_storage_status(app, auth, client):
    with app.app_context():
        s = db.session()
        ready = make_payout(s, status=PayoutStatus.HELD, protected=True).external_id
        waiting = make_payout(
            s,
            status=PayoutStatus.HELD,
            protected=True,
            protection_ends_at=utcnow() + timedelta(days=3),
        ).external_id
        held = make_payout(s, admin_hold=True, hold_reason="Seller under review").external_id
        s.commit()
    auth.as_role("admin")

    page = client.get("/payouts/ready").get_data(as_text=True)
    row = _row(page, ready)
    assert "Ready to release" in row and "protection ended and delivery confirmed" in row
    assert ">held<" not in row  # the storage word is not a state support can act on
    assert re.search(r"ended \d\d \w{3} \d{4}", row)
    assert waiting not in page and held not in page

    blocked = client.get("/payouts/ready?tab=blocked").get_data(as_text=True)
    row = _row(blocked, waiting)
    assert "In protection window" in row and re.search(r"ends \d\d \w{3} \d{4}", row)
    assert "Protection ended" not in blocked
    row = _row(blocked, held)
    assert "Admin hold" in row and "Seller under review" in row

    detail = client.get(f"/payouts/{waiting}").get_data(as_text=True)
    assert "In protection window" in detail and "stored status <code>held</code>" in detail

    with app.app_context():
        s = db.session()
        released = make_payout(s, status=PayoutStatus.RELEASED).external_id
        s.commit()
    detail = client.get(f"/payouts/{released}").get_data(as_text=True)
    assert "Released" in detail and "Not releasable" not in detail
