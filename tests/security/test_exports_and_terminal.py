"""Spreadsheet-safe CSV exports, terminal-safe CLI output, one cron run at a time."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from console import db
from console.audit.service import record
from console.audit.verify import csv_cell, verify
from console.db import get_db
from console.ops.jobs import JOB_LOCKS, _lock_key
from console.ops.models import JobRun
from console.payments.models import WebhookEvent, WebhookStatus

FORMULAS = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1:A9)", "\tTAB", "\rCR"]
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # newline is the row separator


def pinned(app) -> str:
    """The signing key's fingerprint, as the auditor holds it (never read from the bundle)."""
    from console.audit.export import fingerprint, load_signing_key

    with app.app_context():
        key = load_signing_key(app.config["SETTINGS"], app.instance_path)
    return fingerprint(key.public_key())


def export_csv(app, out: Path) -> tuple[Path, list[dict[str, str]]]:
    result = app.test_cli_runner().invoke(
        args=["audit", "export", "--format", "csv", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    with (out / "audit.csv").open(encoding="utf-8", newline="") as f:
        return out, list(csv.DictReader(f))


def test_formula_cells_are_neutralised_and_the_bundle_verifies(app, auth, client, tmp_path):
    """Figure: 0 display cells start with = + - @ tab CR, attacker-typed target ids included."""
    with app.app_context():
        s = db.session()
        for formula in FORMULAS:
            record(s, action="tests:csv:formula", outcome="success", reason=formula)
        s.commit()
    # Without any permission for it: a crafted URL whose target id is a formula, audited as denied.
    auth.as_role("support")
    assert client.get("/actions/orders:order:refund/=cmd|' -C calc'!A0").status_code == 403
    bundle, rows = export_csv(app, tmp_path / "bundle")
    display = [c for c in rows[0] if c not in ("prev_hash", "hash", "canonical")]
    cells = [row[c] for row in rows for c in display if row[c]]
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))]
    denial = next(r for r in rows if r["outcome"] == "denied")
    assert denial["target_id"] == "'=cmd|' -C calc'!A0"
    assert {r["reason"] for r in rows if r["action"] == "tests:csv:formula"} == {
        csv_cell(f) for f in FORMULAS
    }
    count = verify(bundle, fingerprint=pinned(app)).count
    assert count == len(rows)


def test_control_and_ansi_characters_never_reach_a_csv_cell(app, auth, client, tmp_path):
    """Figure: 0 control bytes (ESC, C1 CSI, BEL, NUL-free) in the CSV; 1 line per entry."""
    with app.app_context():
        s = db.session()
        record(
            s,
            action="tests:csv:ansi",
            outcome="success",
            reason="red \x1b[31mALERT\x1b[0m, 8-bit CSI \x9b2J, bell \x07, two\nlines",
            details={"note": "title \x1b]0;pwned\x07"},
        )
        s.commit()
    auth.as_role("support")
    # A crafted action URL whose target id is an escape sequence: refused (no such
    # target can exist) and recorded, escape and all, made safe by the export.
    csrf = auth.csrf_token()
    crafted = client.post("/actions/orders:order:refund/%1b%5b2J%1b%5bH", data={"csrf_token": csrf})
    assert crafted.status_code == 404
    bundle, rows = export_csv(app, tmp_path / "bundle")
    data = (bundle / "audit.csv").read_text(encoding="utf-8")
    assert not CONTROL.search(data), repr(CONTROL.search(data))
    assert data.count("\n") == len(rows) + 1  # no newline inside a cell
    ansi = next(r for r in rows if r["action"] == "tests:csv:ansi")
    assert "\\x1b[31mALERT" in ansi["reason"] and "\\n" in ansi["reason"]
    assert any(r["action"] == "page:request:failed" and "\\x1b" in r["target_id"] for r in rows)
    assert verify(bundle, fingerprint=pinned(app)).count == len(rows)


def add_event(app, event_id: str, *, processed: bool) -> None:
    with app.app_context():
        s = db.session()
        s.add(
            WebhookEvent(
                event_id=event_id,
                type="customer.created",
                raw_body='{"id": "x", "type": "customer.created", "data": {"object": {}}}',
                status=WebhookStatus.PROCESSED if processed else WebhookStatus.FAILED,
                processed_at=None,
            )
        )
        s.commit()


@pytest.mark.parametrize(
    "args",
    [
        ["webhooks", "replay", "evt_\x1b[2J\x1b[31mno_such"],  # an error message
        ["webhooks", "replay", "evt_\x1b]0;pwned\x07"],  # a normal line (the stored event)
    ],
)
def test_cli_output_never_carries_control_or_ansi_characters(app, args):
    """Figure: CLI output and errors with ESC/OSC/BEL in the data: 0 control bytes printed."""
    add_event(app, "evt_\x1b]0;pwned\x07", processed=False)
    result = app.test_cli_runner().invoke(args=args)
    assert result.output.strip()
    assert not CONTROL.search(result.output), repr(result.output)
    assert "\\x1b" in result.output


CRON_COMMANDS = [
    ("payouts-auto-release", ["payouts", "auto-release"]),
    ("payouts-resume", ["payouts", "resume"]),
    ("invoices-retry-stuck", ["invoices", "retry-stuck"]),
    ("coupons-expire-reservations", ["coupons", "expire-reservations"]),
    ("reconcile", ["reconcile", "run"]),
    ("supplier-sync", ["suppliers", "sync"]),
]


@pytest.mark.parametrize(("job", "args"), CRON_COMMANDS)
def test_second_copy_of_a_cron_job_says_it_skipped(app, stripe, job, args):
    """Figure: with a copy running, each of 6 cron commands exits 0, says skipped, 0 tracebacks."""
    engine = get_db(app).engine
    key = {"ns": JOB_LOCKS, "key": _lock_key(job)}
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as holder:
        holder.execute(text("SELECT pg_advisory_lock(:ns, :key)"), key)  # the first copy
        try:
            result = app.test_cli_runner().invoke(args=args)
        finally:
            holder.execute(text("SELECT pg_advisory_unlock(:ns, :key)"), key)
    assert result.exit_code == 0, result.output
    assert f"skipped: another run of {job} is in progress" in result.output
    assert "Traceback" not in result.output and result.exception is None
    with app.app_context():
        assert db.session().scalar(select(func.count()).select_from(JobRun)) == 0


def test_cron_job_runs_when_no_other_copy_holds_the_lock(app, stripe):
    """Figure: without a competing copy the job runs and records 1 job run."""
    result = app.test_cli_runner().invoke(args=["coupons", "expire-reservations"])
    assert result.exit_code == 0, result.output
    assert "skipped" not in result.output
    with app.app_context():
        assert db.session().scalar(select(func.count()).select_from(JobRun)) == 1
