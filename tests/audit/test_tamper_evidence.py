"""Tamper-evidence that holds against the database owner.

The owner can do what the application role cannot (disable a trigger,
delete the tail, rewind the head, edit a display column): these tests do it,
as the owner, and check that what lives outside the database (signed
checkpoints, the auditor's pinned key) and the pages catch it, by number.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from console import create_app, db
from console.audit.chain import append
from console.audit.checkpoints import (
    LOG_MARK,
    read_checkpoints,
    sign_checkpoint,
    store_checkpoint,
    write_checkpoint,
)
from console.audit.verify import Invalid
from console.db import utcnow
from console.ops.jobs import JOBS
from tests.audit.conftest import PIN
from tests.audit.test_export_verify import check, export, fill, lines, write_lines
from tests.conftest import app_config, libpq, truncate_all


def owner_sql(owner_url: str, *statements: str) -> None:
    with psycopg.connect(libpq(owner_url)) as conn:
        for statement in statements:
            conn.execute(statement)


def truncate_tail_as_owner(owner_url: str, keep: int) -> None:
    """The attack of issue 12: disable the triggers, delete the tail, rewind the head."""
    owner_sql(
        owner_url,
        "ALTER TABLE audit_entries DISABLE TRIGGER USER",
        "ALTER TABLE audit_chain_head DISABLE TRIGGER USER",
        f"DELETE FROM audit_entries WHERE seq > {keep}",
        "UPDATE audit_chain_head SET last_seq = e.seq, last_hash = e.hash "
        f"FROM audit_entries e WHERE e.seq = {keep}",
        "ALTER TABLE audit_entries ENABLE TRIGGER USER",
        "ALTER TABLE audit_chain_head ENABLE TRIGGER USER",
    )


@pytest.fixture
def checkpoints(tmp_path) -> Path:
    return tmp_path / "checkpoints"


def checkpoint_now(app, directory: Path):
    with app.app_context():
        return write_checkpoint(db.session(), directory=directory)


# ---------------------------------------------------------------- writing checkpoints


def test_checkpoint_is_signed_written_to_the_directory_and_the_log(
    app, checkpoints, caplog, tmp_path
):
    fill(app, 12)
    with caplog.at_level(logging.INFO, logger="console.audit.checkpoints"):
        c = checkpoint_now(app, checkpoints)
    assert c.seq == 12 and c.path is not None and c.path.parent == checkpoints
    doc = json.loads(c.path.read_text())
    statement = json.loads(doc["statement"])
    assert statement["kind"] == "audit-checkpoint" and statement["seq"] == 12
    assert statement["hash"] == c.hash and statement["key_sha256"] == PIN["fingerprint"]
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith(LOG_MARK)]
    assert len(logged) == 1 and json.loads(logged[0][len(LOG_MARK) + 1 :]) == doc
    # The log copy alone is enough for the verifier.
    log_file = tmp_path / "app.log"
    log_file.write_text("2026-12-02 INFO console.audit.checkpoints " + logged[0] + "\n")
    out = export(app, tmp_path / "bundle")
    assert check(out, checkpoints=[log_file])[0] >= 12


def test_every_n_entries_writes_a_checkpoint_after_commit(pg_url, idp, stripe_double, tmp_path):
    directory = tmp_path / "every"
    app = create_app(
        app_config(
            pg_url,
            idp,
            stripe_double,
            AUDIT_CHECKPOINT_EVERY="5",
            AUDIT_CHECKPOINT_DIR=str(directory),
        )
    )
    truncate_all(app)
    try:
        with app.app_context():
            s = db.session()
            for i in range(12):
                append(s, action="tests:entry:make", outcome="success", actor=None, reason=str(i))
                s.commit()
            # An append that is rolled back leaves no checkpoint behind.
            for _ in range(3):
                append(s, action="tests:entry:make", outcome="success", actor=None)
            s.rollback()
            s.commit()
        found = read_checkpoints(directory)
        assert [c.seq for c in found] == [5, 10]
    finally:
        truncate_all(app)


def test_the_hourly_job_is_scheduled_and_recorded(committed_app):
    """The job's command writes into AUDIT_CHECKPOINT_DIR and records a JobRun."""
    assert JOBS["audit-checkpoint"].every == timedelta(hours=1)
    fill(committed_app, 3)
    result = committed_app.test_cli_runner().invoke(args=["audit", "checkpoint"])
    assert result.exit_code == 0, result.output
    directory = Path(committed_app.config["SETTINGS"].audit_checkpoint_dir)
    assert "checkpoint seq=3" in result.output and len(read_checkpoints(directory)) == 1
    from sqlalchemy import select

    from console.ops.models import JobRun, JobStatus

    with committed_app.app_context():
        run = db.session().scalars(select(JobRun).where(JobRun.job == "audit-checkpoint")).one()
        assert run.status == JobStatus.SUCCEEDED and run.scanned == 3


# ---------------------------------------------------------------- the owner's attacks


def test_truncated_tail_passes_the_chain_but_not_the_checkpoints(
    committed_app, pg_owner_url, checkpoints, tmp_path
):
    fill(committed_app, 30)
    checkpoint_now(committed_app, checkpoints)
    truncate_tail_as_owner(pg_owner_url, keep=20)
    out = export(committed_app, tmp_path / "after-attack")
    # The attack of the issue: the chain alone still verifies...
    assert check(out) == (20, 1, 20, True)
    # ...the signed checkpoint outside the database does not agree.
    with pytest.raises(Invalid) as err:
        check(out, checkpoints=[checkpoints])
    assert err.value.seq == 21 and "truncated: entries 21..30 are missing" in err.value.why
    # The hourly job notices too, and writes nothing that would bless the new state.
    job = committed_app.test_cli_runner().invoke(
        args=["audit", "checkpoint", "--dir", str(checkpoints)]
    )
    assert job.exit_code != 0 and "truncated" in job.output
    assert len(read_checkpoints(checkpoints)) == 1


def test_rewritten_tail_is_named_at_the_checkpointed_seq(
    committed_app, pg_owner_url, checkpoints, tmp_path
):
    fill(committed_app, 30)
    checkpoint_now(committed_app, checkpoints)
    truncate_tail_as_owner(pg_owner_url, keep=20)
    fill(committed_app, 15, action="tests:entry:rewritten")  # a new history from seq 21
    out = export(committed_app, tmp_path / "rewritten")
    assert check(out)[0] == 35
    with pytest.raises(Invalid) as err:
        check(out, checkpoints=[checkpoints])
    assert err.value.seq == 30 and "rewritten: entry 30 differs" in err.value.why
    job = committed_app.test_cli_runner().invoke(
        args=["audit", "checkpoint", "--dir", str(checkpoints)]
    )
    assert job.exit_code != 0 and "rewritten" in job.output


def test_honest_log_verifies_against_its_checkpoints(committed_app, checkpoints, tmp_path):
    fill(committed_app, 10)
    checkpoint_now(committed_app, checkpoints)
    fill(committed_app, 10)
    checkpoint_now(committed_app, checkpoints)
    fill(committed_app, 5)
    out = export(committed_app, tmp_path / "honest")
    result = committed_app.test_cli_runner().invoke(
        args=[
            "audit",
            "verify",
            str(out),
            "--fingerprint",
            PIN["fingerprint"],
            "--checkpoints",
            str(checkpoints),
        ]
    )
    assert result.exit_code == 0, result.output
    assert "2 signed checkpoints, 2 within this export" in result.output


def test_checkpoint_after_the_export_or_its_range_is_not_a_truncation(
    committed_app, checkpoints, tmp_path
):
    fill(committed_app, 10)
    out = export(committed_app, tmp_path / "early")
    fill(committed_app, 5)
    checkpoint_now(committed_app, checkpoints)  # seq 16, written after the export
    assert check(out, checkpoints=[checkpoints])[0] == 10
    # A range that ends before the checkpoint need not contain the checkpointed entry.
    ranged = export(committed_app, tmp_path / "ranged", "--until", "2000-01-01")
    assert check(ranged, checkpoints=[checkpoints])[0] == 0


def test_deleted_last_line_is_named_by_number(bundle_60):
    rows = lines(bundle_60)
    write_lines(bundle_60, rows[:-1])
    with pytest.raises(Invalid) as err:
        check(bundle_60)
    assert err.value.seq == 60 and "entry 60 is gone from the end" in err.value.why
    write_lines(bundle_60, rows[:-3])
    with pytest.raises(Invalid) as err:
        check(bundle_60)
    assert err.value.seq == 58 and "entries 58..60 are gone from the end" in err.value.why


def test_deleted_first_lines_are_named_by_number(bundle_60):
    rows = lines(bundle_60)
    write_lines(bundle_60, rows[2:])
    with pytest.raises(Invalid) as err:
        check(bundle_60)
    assert err.value.seq == 1


def test_checkpoint_signed_by_another_key_is_refused(app, checkpoints, bundle_60):
    forged = sign_checkpoint(Ed25519PrivateKey.generate(), 999, "a" * 64, utcnow())
    store_checkpoint(checkpoints, forged)
    with pytest.raises(Invalid) as err:
        check(bundle_60, checkpoints=[checkpoints])
    assert "not signed by the pinned key" in err.value.why


@pytest.fixture
def bundle_60(app, tmp_path) -> Path:
    fill(app, 60)
    return export(app, tmp_path / "bundle60")


# ---------------------------------------------------------------- display columns


def test_edited_display_column_is_caught_by_verify_and_flagged_on_the_pages(
    committed_app, pg_owner_url, idp, tmp_path
):
    fill(committed_app, 8)
    owner_sql(
        pg_owner_url,
        "ALTER TABLE audit_entries DISABLE TRIGGER USER",
        "UPDATE audit_entries SET reason = 'nothing to see here', actor_email = 'x@example.test' "
        "WHERE seq = 5",
        "ALTER TABLE audit_entries ENABLE TRIGGER USER",
    )
    csv_bundle = export(committed_app, tmp_path / "csv", fmt="csv")
    with pytest.raises(Invalid) as err:
        check(csv_bundle)
    assert err.value.seq == 5 and "column differs from what was hashed" in err.value.why
    # The JSON lines export carries only the hashed form: nothing shown differs.
    assert check(export(committed_app, tmp_path / "jsonl"))[0] == 9  # plus the CSV export

    client = committed_app.test_client()
    from tests.conftest import AuthActions

    auditor = AuthActions(client, idp)
    auditor.as_role("auditor")
    page = client.get("/audit?target_type=order").get_data(as_text=True)
    assert "1 entry differs from what was hashed" in page
    assert page.count(">tampered</span>") == 1
    entry = client.get("/audit/5").get_data(as_text=True)
    assert "This entry differs from what was hashed" in entry
    assert "reason differs from what was hashed" in entry
    assert "actor_email differs from what was hashed" in entry
    clean = client.get("/audit/4").get_data(as_text=True)
    assert "differs from what was hashed" not in clean
