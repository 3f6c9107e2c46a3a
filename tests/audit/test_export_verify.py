"""Export bundles that auditors verify offline; tampering is named by sequence number."""

from __future__ import annotations

import base64
import json
import tarfile
from datetime import timedelta
from io import BytesIO
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select

from console import db
from console.audit.chain import append
from console.audit.models import AuditCheckpoint, AuditEntry
from console.audit.verify import Invalid, verify
from console.db import utcnow
from tests.audit.conftest import PIN
from tests.conftest import libpq

ROOT = Path(__file__).resolve().parents[2]


def fill(app, n: int, *, action: str = "tests:entry:make") -> None:
    with app.app_context():
        s = db.session()
        for i in range(n):
            append(
                s,
                action=action if i % 3 else "tests:entry:other",
                outcome="success",
                actor={
                    "sub": f"sub-{i % 7}",
                    "email": f"user{i % 7}@example.test",
                    "roles": ["admin"],
                },
                target_type="order",
                target_id=f"ORD-{i:06d}",
                reason=f'reason number {i} with ünïcode and "quotes"',
                before={"status": "paid"},
                after={"status": "confirmed", "card_number": "4242 4242 4242 4242"},
            )
        s.commit()


def export(app, out: Path, *extra: str, fmt: str = "jsonl") -> Path:
    result = app.test_cli_runner().invoke(
        args=["audit", "export", "--format", fmt, "--out", str(out), *extra]
    )
    assert result.exit_code == 0, result.output
    return out


def lines(bundle: Path) -> list[str]:
    return (bundle / "audit.jsonl").read_text(encoding="utf-8").splitlines()


def write_lines(bundle: Path, new: list[str]) -> None:
    (bundle / "audit.jsonl").write_text("\n".join(new) + "\n", encoding="utf-8")


def seq_of(line: str) -> int:
    return json.loads(line)["entry"]["_seq"]


@pytest.fixture
def bundle(app, tmp_path) -> Path:
    fill(app, 60)
    return export(app, tmp_path / "bundle")


def check(bundle: Path, **kw) -> tuple[int, int | None, int | None, bool]:
    r = verify(bundle, fingerprint=PIN["fingerprint"], **kw)
    return r.count, r.first, r.last, r.chain


def test_export_of_10000_entries_verifies(app, tmp_path):
    fill(app, 10_000)
    out = export(app, tmp_path / "big")
    assert check(out) == (10_000, 1, 10_000, True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == 10_000 and manifest["prev_hash"] == "0" * 64
    assert manifest["exported_by"]["sub"].startswith("cli:")


def test_secrets_are_redacted_before_hashing(bundle):
    text = (bundle / "audit.jsonl").read_text()
    assert "4242 4242" not in text and "[redacted]" in text


def test_edited_line_fails_at_its_seq(bundle):
    rows = lines(bundle)
    rows[9] = rows[9].replace("reason number 9", "reason number 99")
    write_lines(bundle, rows)
    with pytest.raises(Invalid) as err:
        check(bundle)
    assert err.value.seq == 10 and "edited" in err.value.why


def test_deleted_line_fails_at_the_next_seq(bundle):
    rows = lines(bundle)
    del rows[19]
    write_lines(bundle, rows)
    with pytest.raises(Invalid) as err:
        check(bundle)
    assert err.value.seq == 21 and "missing" in err.value.why


def test_inserted_line_fails_at_its_seq(bundle, app):
    rows = lines(bundle)
    fake = json.loads(rows[29])
    # A well-formed entry with a valid own hash, claiming the next position.
    entry = fake["entry"]
    entry["reason"] = "inserted by an attacker"
    from console.audit.chain import canonical_json, entry_hash, export_line

    canonical = canonical_json(entry)
    rows.insert(30, export_line(canonical, entry_hash(canonical)))
    write_lines(bundle, rows)
    with pytest.raises(Invalid) as err:
        check(bundle)
    assert err.value.seq == 30 and "inserted" in err.value.why


def test_swapped_lines_fail_at_the_first_out_of_place(bundle):
    rows = lines(bundle)
    rows[40], rows[41] = rows[41], rows[40]
    write_lines(bundle, rows)
    with pytest.raises(Invalid) as err:
        check(bundle)
    assert err.value.seq == 42 and "reordered" in err.value.why


def test_swapped_last_lines_and_deleted_second_to_last(bundle):
    rows = lines(bundle)
    write_lines(bundle, [*rows[:58], rows[59], rows[58]])
    with pytest.raises(Invalid) as err:
        check(bundle)
    assert err.value.seq == 60 and "reordered" in err.value.why
    write_lines(bundle, [*rows[:58], rows[59]])
    with pytest.raises(Invalid) as err:
        check(bundle)
    assert err.value.seq == 60 and "missing: entries 59..59" in err.value.why


def test_long_entries_export_and_verify(app, tmp_path):
    """Lines far longer than a COPY block: the first and last positions still come out right."""
    with app.app_context():
        s = db.session()
        for i in range(3):
            append(
                s,
                action="tests:entry:big",
                outcome="success",
                actor={"sub": "sub-big", "email": "big@example.test", "roles": ["admin"]},
                after={"blob": "ü" * 40_000, "i": i},
            )
        s.commit()
    out = export(app, tmp_path / "long")
    assert check(out)[:3] == (3, 1, 3)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["unfiltered"] and manifest["contiguous"]


def test_tampered_manifest_fails_the_signature(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["count"] = 59
    (bundle / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, indent=2) + "\n")
    with pytest.raises(Invalid) as err:
        check(bundle)
    assert "bad signature" in err.value.why


def test_another_key_fails_the_signature(bundle, tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from console.audit.export import public_pem

    other = tmp_path / "other.pem"
    other.write_bytes(public_pem(Ed25519PrivateKey.generate().public_key()))
    with pytest.raises(Invalid):
        verify(bundle, other)


def test_data_file_hash_is_checked(bundle):
    with (bundle / "audit.jsonl").open("a") as f:
        f.write("\n")  # invisible to the entry walk, visible to the hash
    with pytest.raises(Invalid) as err:
        check(bundle)
    assert "data file hash mismatch" in err.value.why


def test_csv_bundle_verifies(app, tmp_path):
    fill(app, 25)
    out = export(app, tmp_path / "csv", fmt="csv")
    assert check(out)[0] == 25


def test_filtered_export_checks_hashes_not_chain(app, tmp_path):
    fill(app, 30)
    with app.app_context():
        from console.audit.export import load_signing_key, write_bundle
        from console.audit.views import filtered

        stmt, used, _ = filtered({"action": "tests:entry:make"})
        out = tmp_path / "filtered"
        key = load_signing_key(app.config["SETTINGS"], app.instance_path)
        write_bundle(
            db.session(), stmt, out_dir=out, fmt="jsonl", filters=used, exporter={}, key=key
        )
    count, _first, _last, chain = check(out)
    assert count == 20 and chain is False


def test_verifier_trusts_only_a_pinned_key(bundle, tmp_path):
    """The key shipped in the bundle is never enough on its own."""
    from console.audit.verify import Untrusted

    with pytest.raises(Untrusted):
        verify(bundle, bundle / "public_key.pem")
    with pytest.raises(Untrusted):
        verify(bundle)
    # A bundle re-signed with another key, shipping that key: refused by the pin.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from console.audit.export import public_pem

    forger = Ed25519PrivateKey.generate()
    data = (bundle / "manifest.json").read_bytes()
    (bundle / "manifest.sig").write_bytes(base64.b64encode(forger.sign(data)) + b"\n")
    (bundle / "public_key.pem").write_bytes(public_pem(forger.public_key()))
    with pytest.raises(Invalid) as err:
        check(bundle)
    assert "not the pinned" in err.value.why


def test_cli_verify_exit_codes(app, bundle):
    runner = app.test_cli_runner()
    good = runner.invoke(args=["audit", "verify", str(bundle), "--fingerprint", PIN["fingerprint"]])
    assert good.exit_code == 0 and "valid: 60" in good.output
    unpinned = runner.invoke(
        args=["audit", "verify", str(bundle), "--public-key", str(bundle / "public_key.pem")]
    )
    assert unpinned.exit_code == 2


def test_export_is_audited(app, bundle):
    with app.app_context():
        entries = (
            db.session()
            .scalars(select(AuditEntry).where(AuditEntry.action == "audit:log:export"))
            .all()
        )
    assert len(entries) == 1 and entries[0].details["extra"]["count"] == 60


# ---------------------------------------------------------------- through the browser's routes


def test_auditor_downloads_a_bundle_that_verifies(app, auth, client, tmp_path):
    fill(app, 15)
    auth.as_role("auditor")
    page = client.get("/audit/export")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Fingerprint" in html and 'name="target_type"' in html and 'name="target_id"' in html
    assert "verify_bundle.py" in html and "--fingerprint" in html
    assert "python -m console.audit.verify" not in html
    resp = client.get("/audit/export/download?format=jsonl")
    assert resp.status_code == 200
    assert resp.headers["Content-Disposition"].startswith("attachment; filename=audit-export-")
    with tarfile.open(fileobj=BytesIO(resp.data), mode="r:gz") as tar:
        tar.extractall(tmp_path, filter="data")
    count, first, _last, chain = check(tmp_path / "audit-export")
    assert chain and first == 1 and count >= 15  # plus the login and the page view
    with app.app_context():
        actions = [e.action for e in db.session().scalars(select(AuditEntry))]
    assert "audit:export_page:view" in actions and "audit:log:export" in actions


def test_support_cannot_export(app, auth, client):
    auth.as_role("support")
    assert client.get("/audit/export").status_code == 403
    assert client.get("/audit/export/download").status_code == 403
    with app.app_context():
        denied = (
            db.session().scalars(select(AuditEntry).where(AuditEntry.outcome == "denied")).all()
        )
    assert len(denied) == 2 and all(
        e.details["extra"]["needs"] == "audit:log:export" for e in denied
    )


def test_bad_filter_is_a_clear_400(auth, client):
    auth.as_role("auditor")
    resp = client.get("/audit/export/download?since=yesterday-ish")
    assert resp.status_code == 400 and "is not a date" in resp.get_data(as_text=True)


# ---------------------------------------------------------------- append-only in PostgreSQL


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_entries SET reason = 'rewritten'",
        "DELETE FROM audit_entries",
        "TRUNCATE audit_entries",
    ],
)
@pytest.mark.parametrize("role", ["app", "owner"])
def test_database_refuses_to_change_history(committed_app, pg_url, pg_owner_url, sql, role):
    """The app role lacks the privilege; even the owner meets the append-only trigger."""
    fill(committed_app, 3)
    url = libpq(pg_url if role == "app" else pg_owner_url)
    with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(sql)
    with committed_app.app_context():
        assert len(db.session().scalars(select(AuditEntry)).all()) == 3


# ---------------------------------------------------------------- retention


def test_purge_refuses_young_entries_and_keeps_a_verifiable_log(
    committed_app, pg_superuser_url, tmp_path
):
    fill(committed_app, 10)
    runner = committed_app.test_cli_runner()
    young = runner.invoke(
        args=["audit", "purge", "--before", utcnow().strftime("%Y-%m-%d"), "--yes"]
    )
    assert young.exit_code != 0 and "younger than 365 days" in young.output
    # Age the first four entries (test set-up only, bypassing the trigger in this session).
    with psycopg.connect(libpq(pg_superuser_url)) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE audit_entries SET ts = ts - interval '500 days' WHERE seq <= 4")
    result = runner.invoke(args=["audit", "purge", "--yes"])
    assert result.exit_code == 0, result.output
    assert "purged 4 entries through seq 4" in result.output
    with committed_app.app_context():
        s = db.session()
        assert s.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq)) == 5
        checkpoint = s.scalars(select(AuditCheckpoint)).one()
        assert checkpoint.purged_through_seq == 4 and checkpoint.signature
    out = export(committed_app, tmp_path / "after-purge")
    count, first, _last, chain = check(out)
    assert first == 5 and chain and count == 7  # the 6 entries left and the purge's own entry
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["checkpoint"]["purged_through_seq"] == 4
    assert manifest["checkpoint"]["purged_through_hash"] == manifest["prev_hash"]
    # A manifest whose start does not follow the checkpoint is refused (re-signed here,
    # as an insider with the key could).
    from console.audit.export import load_signing_key

    with committed_app.app_context():
        key = load_signing_key(committed_app.config["SETTINGS"], committed_app.instance_path)
    manifest["checkpoint"]["purged_through_hash"] = "f" * 64
    data = json.dumps(manifest, sort_keys=True, indent=2).encode() + b"\n"
    (out / "manifest.json").write_bytes(data)
    (out / "manifest.sig").write_bytes(base64.b64encode(key.sign(data)) + b"\n")
    with pytest.raises(Invalid) as err:
        check(out)
    assert err.value.seq == 5 and "checkpoint" in err.value.why


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_export_of_a_time_window_and_an_actor_holds_exactly_that_selection(app, tmp_path, fmt):
    # The window's seq bounds are subqueries (the head's disorder, one probe per side):
    # the export's COPY carries them as the page does.
    from console.audit.export import load_signing_key, write_bundle
    from console.audit.views import filtered

    fill(app, 21)
    now = utcnow()
    since, until = (
        (now - timedelta(minutes=5)).isoformat(),
        (now + timedelta(minutes=5)).isoformat(),
    )
    cases = [
        ({"since": since, "until": until, "actor": "user3@example.test"}, 3),
        ({"since": since, "actor": "sub-3"}, 3),
        ({"until": since}, None),  # before these entries: whatever came earlier
        ({"since": (now + timedelta(days=1)).isoformat()}, 0),
    ]
    with app.app_context():
        s = db.session()
        key = load_signing_key(app.config["SETTINGS"], app.instance_path)
        for n, (args, expected) in enumerate(cases):
            stmt, used, errors = filtered(args)
            assert not errors
            want = len(s.scalars(stmt).all())
            if expected is not None:
                assert want == expected, args
            out = tmp_path / f"{fmt}-{n}"
            write_bundle(s, stmt, out_dir=out, fmt=fmt, filters=used, exporter={}, key=key)
            assert check(out)[0] == want, args
