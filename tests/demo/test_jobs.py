"""Runbook 004: a late job, run now from /ops/jobs.

The demo's one late job is the signed audit checkpoint: it has never run, and
its schedule (hourly at :30) fixes that by itself. This module's name sorts
first, so the walk runs right after the demo starts; if the demo happened to
start just before :30, the job is on time by then and the walk says so.
"""

from __future__ import annotations

import pytest

from tests.demo.test_queues import act

# The first walk also waits for bin/demo to start (set-up counts against its timeout).
pytestmark = [pytest.mark.demo, pytest.mark.browser, pytest.mark.timeout(600)]


def test_late_job_run_now(walk):
    w = walk("admin")
    count = w.card_count("Late jobs")
    if count == 0:
        pytest.skip("the only late job (audit checkpoint) ran on its own schedule at :30")
    w.step("dashboard")
    w.follow_card("Late jobs")
    row = w.page.locator("tr[id^=row-job-]", has_text="late").first
    row.wait_for()
    job = row.get_attribute("id").removeprefix("row-job-")
    w.step("jobs")
    reason = "The checkpoint job never ran on this host; running it now"
    act(w, row, "Run now", reason)
    w.stop_counting()
    w.page.goto(f"{w.demo.url}/audit?action=jobs:job:run")
    entry = w.page.locator("main tbody tr", has_text=job).first
    entry.wait_for()
    assert w.who in entry.inner_text()
    w.step("audit log")
    for _ in range(40):  # the worker runs it; the job is on time again
        if w.dashboard_count("Late jobs") == count - 1:
            break
        w.page.wait_for_timeout(500)
    assert w.dashboard_count("Late jobs") == count - 1
