"""The alert rules: valid for promtool, and the runbooks' thresholds unit-tested."""

from __future__ import annotations

import shutil
import subprocess

from tests.conftest import ROOT

RULES = ROOT / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")  # Debian package prometheus; bin/test installs it


def test_alert_rules_are_valid():
    assert PROMTOOL, "promtool is missing: install the Debian package prometheus"
    done = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES / "alerts.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_alert_rules_fire_at_the_runbooks_thresholds():
    """Stuck orders 10 min, webhook errors > 2 %, auto-release late/erroring, invoices, p95."""
    assert PROMTOOL, "promtool is missing: install the Debian package prometheus"
    done = subprocess.run(
        [PROMTOOL, "test", "rules", "alerts.test.yml"],
        cwd=RULES,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
