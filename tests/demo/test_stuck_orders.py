"""Runbooks 000-003 on the stuck-orders queue, from the dashboard card.

Each walk fixes its own seeded order; they share one demo.
"""

from __future__ import annotations

import pytest

# The first walk also waits for bin/demo to start (set-up counts against its timeout).
pytestmark = [pytest.mark.demo, pytest.mark.browser, pytest.mark.timeout(600)]

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
    count = fix_stuck_order(w, "ORD-DEMO-0001", "webhook not processed", "Replay event", reason)
    assert "evt_demo_stuck_0001 replayed and processed" in w.flash()
    # The order is no longer stuck: its row leaves the queue.
    w.page.locator("#row-order-ORD-DEMO-0001").wait_for(state="detached")
    w.step("replayed")
    check_fixed(
        w, "ORD-DEMO-0001", count, "webhooks:event:replay", reason, "status paid → confirmed"
    )


def test_verify_with_stripe_and_mark_paid(walk):
    w = walk("support")
    reason = "Customer's second card went through at Stripe; verifying (runbook 002)"
    count = fix_stuck_order(
        w, "ORD-DEMO-0006", "order still pending", "Verify with Stripe and mark paid", reason
    )
    assert "ORD-DEMO-0006" in w.flash()
    w.page.locator("#row-order-ORD-DEMO-0006", has_text="Resolved").wait_for()
    w.step("verified")
    check_fixed(
        w, "ORD-DEMO-0006", count, "orders:payment:verify", reason, "status pending → confirmed"
    )


def test_confirm_reservation(walk):
    w = walk("support")
    reason = "Paid and confirmed, but the stock hold was never confirmed (runbook 000)"
    count = fix_stuck_order(
        w, "ORD-DEMO-0004", "reservation not confirmed", "Confirm reservation", reason
    )
    assert "ORD-DEMO-0004" in w.flash()
    w.page.locator("#row-order-ORD-DEMO-0004", has_text="Resolved").wait_for()
    w.step("reservation confirmed")
    check_fixed(w, "ORD-DEMO-0004", count, "inventory:reservation:confirm", reason, "→")


def test_forward_to_supplier(walk):
    w = walk("support")
    reason = "Paid nine hours ago and never sent to Roastery (runbook 001)"
    count = fix_stuck_order(
        w, "ORD-DEMO-0005", "not forwarded to the supplier", "Forward to supplier", reason
    )
    assert "ORD-DEMO-0005" in w.flash()
    w.page.locator("#row-order-ORD-DEMO-0005", has_text="Resolved").wait_for()
    w.step("forwarded")
    check_fixed(w, "ORD-DEMO-0005", count, "orders:supplier:forward", reason, "→")


def test_refund_amount_mismatch_with_step_up(walk):
    """Runbook 002: Stripe took 9.90 for a 99.00 order. Refund what was taken, after a step-up."""
    w = walk("admin")
    count = w.card_count(CARD)
    w.step("dashboard")
    w.follow_card(CARD)
    row = w.page.locator("#row-order-ORD-DEMO-0013")
    assert "mismatch" in row.inner_text()
    w.step("stuck orders")
    w.wait_for_step_up_window()
    dialog = w.open_action(row, "Refund")
    w.step("refund needs a step-up")
    panel = w.step_up(dialog)
    assert "/actions/orders:order:refund/ORD-DEMO-0013" in w.page.url
    w.step("confirm refund after step-up")
    reason = "Amount mismatch, possible fraud: returning the 9.90 EUR Stripe took (runbook 002)"
    w.confirm(panel, reason)
    done = w.page.locator("#confirm-panel .notice")
    done.wait_for()
    assert "9.90" in done.inner_text(), done.inner_text()
    w.step("refunded")
    check_fixed(w, "ORD-DEMO-0013", count, "orders:order:refund", reason, "status paid → refunded")
