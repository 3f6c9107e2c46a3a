"""Runbooks 000-003 on the stuck-orders queue, from the dashboard card.

Each walk fixes its own seeded order; they share one demo.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.demo, pytest.mark.browser]

CARD = "Stuck orders"


def fix_stuck_order(w, order: str, because: str, action: str, reason: str, **fields: str):
    """Dashboard -> the card -> the order's row -> the action; returns the card's count."""
    count = w.card_count(CARD)
    w.step("dashboard")
    w.follow_card(CARD)
    row = w.page.locator(f"#row-order-{order}")
    assert because in row.inner_text()
    w.step("stuck orders")
    dialog = w.open_action(row, action)
    w.step(f"confirm {action}")
    w.confirm(dialog, reason, **fields)
    return count


def check_fixed(w, order: str, count: int, action: str, reason: str, *changes: str) -> None:
    w.stop_counting()
    assert w.dashboard_count(CARD) == count - 1
    w.page.goto(f"{w.demo.url}/orders/{order}")
    w.assert_history(action, reason, *changes)
    w.step("order history")


def test_replay_missed_webhook(walk):
    w = walk("support")
    reason = "Webhook failed on a database blip; replaying it (runbook 002)"
    count = fix_stuck_order(
        w, "ORD-DEMO-0001", "webhook not processed", "Replay event", reason
    )
    assert "evt_demo_stuck_0001 replayed and processed" in w.flash()
    # The order is no longer stuck: its row leaves the queue.
    w.page.locator("#row-order-ORD-DEMO-0001").wait_for(state="detached")
    w.step("replayed")
    check_fixed(w, "ORD-DEMO-0001", count, "webhooks:event:replay", reason, "status paid → confirmed")
