"""Runbooks 000-004 on the other queues, each from its dashboard card, each its own record."""

from __future__ import annotations

import re

import pytest

# The first walk also waits for bin/demo to start (set-up counts against its timeout).
pytestmark = [pytest.mark.demo, pytest.mark.browser, pytest.mark.timeout(600)]


def start_at_card(w, card: str, row_selector: str):
    count = w.card_count(card)
    w.step("dashboard")
    w.follow_card(card)
    row = w.page.locator(row_selector)
    row.wait_for()
    w.step(card)
    return count, row


def act(w, scope, action: str, reason: str, **fields: str) -> str:
    dialog = w.open_action(scope, action)
    w.step(f"confirm {action}")
    w.confirm(dialog, reason, **fields)
    message = w.flash()
    w.step("done")
    return message


def verify(
    w, card: str, count: int, drop: int, record_url: str, action: str, reason: str, *changes
):
    w.stop_counting()
    assert w.dashboard_count(card) == count - drop
    w.page.goto(f"{w.demo.url}{record_url}")
    w.assert_history(action, reason, *changes)
    w.step("history")


# ----------------------------------------------------------------- invoices (runbook 004)


def test_retry_one_invoice_then_all(walk):
    w = walk("support")
    count, row = start_at_card(w, "Failed invoices", "#row-invoice-INV-DEMO-0003")
    reason = "Provider key was rotated by finance; retrying the failed invoice"
    message = act(w, row, "Retry now", reason)
    assert "INV-DEMO-0003" in message
    w.stop_counting()
    w.page.goto(f"{w.demo.url}/invoices/INV-DEMO-0003")
    w.assert_history("invoices:invoice:retry", reason, "attempts 6 → 7")
    w.step("invoice history")
    # Retry all: back at the queue, one button for every invoice shown.
    w.page.goto(f"{w.demo.url}/invoices/failed")
    reason_all = "Provider maintenance window is over; retrying every stuck invoice"
    message = act(w, w.page.locator("main"), "Retry all shown", reason_all)
    assert "INV-DEMO-0001" in message or "invoice" in message.lower()
    w.page.goto(f"{w.demo.url}/invoices/INV-DEMO-0001")
    w.assert_history("invoices:selection:retry", reason_all, "attempts 2 → 3")
    w.step("retried invoice history")
    assert w.dashboard_count("Failed invoices") < count


# ----------------------------------------------------------------- payouts (runbook 003)


def test_lift_payout_hold(walk):
    w = walk("admin")
    count = w.card_count("Payouts ready")
    w.step("dashboard")
    w.follow_card("Payouts ready")
    w.page.get_by_role("link", name="Held or blocked").click()
    row = w.page.locator("#row-payout-PO-0006")
    row.wait_for()
    w.step("held payouts")
    reason = "KYC review OPS-2211 closed: seller verified"
    message = act(w, row, "Lift hold", reason)
    assert "PO-0006" in message
    verify(
        w,
        "Payouts ready",
        count,
        -1,
        "/payouts/PO-0006",
        "payouts:payout:unhold",
        reason,
        "admin_hold True → False",
    )


def approve_as_second_admin(walk, approval_text: str, reason: str):
    """admin2 approves the request that mentions `approval_text`, after a step-up."""
    w2 = walk("admin2", name=None)
    count = w2.card_count("Approvals waiting")
    w2.step("dashboard (admin2)")
    w2.follow_card("Approvals waiting")
    row = w2.page.locator("tr[id^=row-approval-]", has_text=approval_text)
    row.wait_for()
    w2.step("approvals")
    w2.wait_for_step_up_window()
    dialog = w2.open_action(row, "Approve and release")
    w2.step("approve needs a step-up")
    panel = w2.step_up(dialog)
    w2.step("confirm approval after step-up", axe=False)
    w2.confirm(panel, reason)
    done = w2.page.locator("#confirm-panel .notice")
    done.wait_for()
    assert "released" in done.inner_text().lower(), done.inner_text()
    w2.step("approved and released")
    w2.stop_counting()
    assert w2.dashboard_count("Approvals waiting") == count - 1
    return w2


def test_release_one_payout_four_eyes(walk):
    w = walk("admin", name="release_one_request")
    count, row = start_at_card(w, "Payouts ready", "#row-payout-PO-0003")
    reason = "Auto-release failed on a Stripe 500; releasing PO-0003 by hand"
    message = act(w, row, "Request release", reason)
    assert "PO-0003" in message
    w.stop_counting()
    assert w.dashboard_count("Payouts ready") == count - 1
    w.close()
    approve = "Four eyes: checked delivery and protection window for PO-0003"
    w2 = approve_as_second_admin(walk, "PO-0003", approve)
    w2.page.goto(f"{w2.demo.url}/payouts/PO-0003")
    w2.assert_history("payouts:release:approve", approve, "status pending_approval → released")
    transfer = w2.page.locator("main").inner_text()
    assert "tr_" in transfer  # the Stripe transfer is visible on the payout
    w2.step("payout history")


def test_release_selection_four_eyes(walk):
    w = walk("admin", name="release_selection_request")
    count = w.card_count("Payouts ready")
    w.step("dashboard")
    w.follow_card("Payouts ready")
    # "All shown": every payout the page lists (the filter narrows it when it has to).
    assert w.page.locator("#row-payout-PO-0004").count() == 1
    assert w.page.locator("#row-payout-PO-0005").count() == 1
    w.step("ready payouts")
    reason = "Every payout ready today is due; releasing the selection"
    message = act(w, w.page.locator("main"), "Request release of all shown", reason)
    assert "requested" in message
    w.stop_counting()
    assert w.dashboard_count("Payouts ready") < count
    w.close()
    approve = "Four eyes: today's selection checked against the ledger"
    w2 = approve_as_second_admin(walk, "PO-0004", approve)
    w2.page.goto(f"{w2.demo.url}/payouts/PO-0004")
    w2.assert_history("payouts:release:approve", approve, "→ released")
    w2.step("payout history")


# ----------------------------------------------------------------- reconciliation (runbook 003)


def finding_fix(
    walk, name: str, finding_text: str, action: str, reason: str, order: str | None, *changes: str
):
    w = walk("admin", name=name)
    count = w.card_count("Reconciliation findings")
    w.step("dashboard")
    w.follow_card("Reconciliation findings")
    row = w.page.locator("tr[id^=row-finding-]", has_text=finding_text)
    row.wait_for()
    w.step("findings")
    message = act(w, row, action, reason)
    w.stop_counting()
    assert w.dashboard_count("Reconciliation findings") == count - 1
    if order:
        w.page.goto(f"{w.demo.url}/orders/{order}")
        w.assert_history("reconciliation:finding:", reason, *changes)
        w.step("order history")
    return w, message


def test_finding_transfer_order_not_completed(walk):
    finding_fix(
        walk,
        "finding_mark_completed",
        "ORD-DEMO-0008",
        "Mark order completed",
        "Transfer went out nine days ago; the order is done (runbook 003)",
        "ORD-DEMO-0008",
        "status delivered → completed",
    )


def test_finding_order_paid_no_stripe(walk):
    finding_fix(
        walk,
        "finding_mark_cancelled",
        "ORD-DEMO-0009",
        "Mark order cancelled",
        "Stripe has no payment for it; customer confirmed they never paid",
        "ORD-DEMO-0009",
        "status confirmed → cancelled",
    )


def test_finding_event_not_received(walk):
    finding_fix(
        walk,
        "finding_apply_missed_event",
        "ORD-DEMO-0002",
        "Apply the missed event",
        "The event was stored but never processed; applying it from Stripe",
        "ORD-DEMO-0002",
        "status paid → confirmed",
    )


def test_finding_stripe_paid_no_order(walk):
    w, message = finding_fix(
        walk,
        "finding_create_order",
        "no order references",
        "Create the missing order",
        "Stripe took 42.00 EUR and the order was never created",
        None,
    )
    order = message.split("Order ", 1)[1].split(" ", 1)[0]
    w.page.goto(f"{w.demo.url}/orders/{order}")
    w.assert_history(
        "reconciliation:finding:create_order",
        "Stripe took 42.00 EUR and the order was never created",
        "status — → confirmed",
    )
    w.step("order history")


# ----------------------------------------------------------------- inventory (runbook 000)


def test_inventory_drift_post_correction(walk):
    w = walk("admin")
    count, row = start_at_card(w, "Inventory drift", "#row-inventory_item-SKU-0007")
    reason = "Stock was edited by hand after a recount; booking the +5 in the ledger"
    message = act(w, row, "Post correction", reason)
    assert "SKU-0007" in message
    verify(
        w,
        "Inventory drift",
        count,
        1,
        "/inventory/items/SKU-0007",
        "inventory:stock:correct",
        reason,
        "drift 5 → 0",
    )


# ----------------------------------------------------------------- coupons (runbook 002)


def test_coupon_release_expired(walk):
    w = walk("support")
    count, row = start_at_card(w, "Coupon leaks", "#row-coupon-SPRING25")
    reason = "Checkout crashed before releasing these; giving SPRING25 its count back"
    message = act(w, row, "Release expired reservations", reason)
    assert "SPRING25" in message
    verify(
        w,
        "Coupon leaks",
        count,
        2,
        "/coupons/SPRING25",
        "coupons:reservation:release",
        reason,
        "expired_held 2 → 0",
    )


def test_coupon_repair_count(walk):
    w = walk("admin")
    wrong = int(re.search(r"(\d+) wrong reserved count", w.card_sub("Coupon leaks")).group(1))
    _count, row = start_at_card(w, "Coupon leaks", "#row-coupon-SUMMER15")
    reason = "Double increment on SUMMER15: the count must equal the held reservations"
    message = act(w, row, "Repair reserved count", reason)
    assert "SUMMER15" in message
    w.stop_counting()
    w.page.goto(f"{w.demo.url}/coupons/SUMMER15")
    w.assert_history("coupons:reserved_count:repair", reason, "reserved_count 7 → 2")
    w.step("history")
    w.page.goto(f"{w.demo.url}/")
    left = re.search(r"(\d+) wrong reserved count", w.card_sub("Coupon leaks"))
    assert (int(left.group(1)) if left else 0) == wrong - 1


# ----------------------------------------------------------------- suppliers (runbook 001)


def test_supplier_retry_failed_sync(walk):
    w = walk("admin")
    failed = int(re.search(r"(\d+) failed sync", w.card_sub("Supplier sync")).group(1))
    w.step("dashboard")
    w.follow_card("Supplier sync")
    row = w.page.locator("tr[id^=row-supplier_sync_run-]", has_text="Roastery Supplies GmbH").first
    row.wait_for()
    run_id = row.get_attribute("id").rsplit("-", 1)[1]
    w.step("supplier sync")
    reason = "Supplier API is back after the 502; resuming Roastery's catalogue at page 3"
    message = act(w, row, "Retry sync", reason)
    assert "page 3" in message or "Roastery" in message or "sync" in message.lower()
    w.stop_counting()
    w.page.goto(f"{w.demo.url}/suppliers/runs/{run_id}")
    w.assert_history("suppliers:sync:retry", reason, "→")
    w.step("sync run history")
    for _ in range(40):  # the retried run goes on in the worker
        w.page.goto(f"{w.demo.url}/")
        if f"{failed - 1} failed sync" in w.card_sub("Supplier sync"):
            break
        w.page.wait_for_timeout(500)
    assert f"{failed - 1} failed sync" in w.card_sub("Supplier sync")


def test_finding_amount_mismatch_refund(walk):
    """The mismatch finding's fix is the order's refund, from the finding, after a step-up."""
    w = walk("admin", name="finding_refund")
    count = w.card_count("Reconciliation findings")
    w.step("dashboard")
    w.follow_card("Reconciliation findings")
    row = w.page.locator("tr[id^=row-finding-]", has_text="ORD-DEMO-0003")
    row.wait_for()
    w.step("findings")
    w.wait_for_step_up_window()
    dialog = w.open_action(row, "Refund the order")
    w.step("refund needs a step-up")
    panel = w.step_up(dialog)
    w.step("confirm refund after step-up", axe=False)
    reason = "Stripe took 12.90 EUR for a 129.00 EUR order: refunding it (runbook 003)"
    w.confirm(panel, reason)
    done = w.page.locator("#confirm-panel .notice")
    done.wait_for()
    assert "Refunded 12.90 EUR" in done.inner_text(), done.inner_text()
    w.step("refunded")
    w.stop_counting()
    assert w.dashboard_count("Reconciliation findings") == count - 1
    w.page.goto(f"{w.demo.url}/orders/ORD-DEMO-0003")
    w.assert_history("reconciliation:finding:refund", reason, "status paid → refunded")
    w.step("order history")
