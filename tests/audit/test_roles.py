"""Two database roles: the application role can only read and append the audit log.

The whole suite runs the app as the application role made by
`console.dbroles.create_app_role` (see `pg_database` in tests/conftest.py);
these tests attack the audit tables with that role directly, as an attacker
holding the app's credentials would.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import select

from console import db
from console.audit.chain import (
    GENESIS_HASH,
    append,
    canonical_json,
    display_problems,
    entry_hash,
    format_ts,
)
from console.audit.models import AuditEntry
from console.db import utcnow
from console.dbroles import privileges, role_of
from tests.conftest import libpq


def fill(app, n: int) -> None:
    with app.app_context():
        s = db.session()
        for i in range(n):
            append(
                s,
                action="tests:entry:make",
                outcome="success",
                actor={"sub": "sub-1", "email": "a@example.test", "roles": ["admin"]},
                target_type="order",
                target_id=f"ORD-{i}",
                reason=f"reason {i}",
            )
        s.commit()


def head(url: str) -> tuple[int, str]:
    with psycopg.connect(libpq(url)) as conn:
        row = conn.execute("SELECT last_seq, last_hash FROM audit_chain_head").fetchone()
        assert row is not None
        return int(row[0]), str(row[1])


def count(url: str) -> int:
    with psycopg.connect(libpq(url)) as conn:
        row = conn.execute("SELECT count(*) FROM audit_entries").fetchone()
        assert row is not None
        return int(row[0])


def test_the_app_runs_as_a_role_that_may_only_read_and_append(session_app, pg_url, pg_owner_url):
    settings = session_app.config["SETTINGS"]
    assert role_of(settings.database_url) != role_of(settings.owner_database_url)
    assert privileges(pg_url) == {
        "audit_entries": ["SELECT", "INSERT"],
        "audit_chain_head": ["SELECT"],
        "audit_checkpoints": ["SELECT"],
    }
    # The owner owns them; the queues' tables are plain read/write for the app.
    assert "OWNER" in privileges(pg_owner_url)["audit_entries"]
    assert privileges(pg_url, ["orders"])["orders"] == ["SELECT", "INSERT", "UPDATE", "DELETE"]


ATTACKS = {
    "update an entry": "UPDATE audit_entries SET reason = 'rewritten'",
    "delete the tail": "DELETE FROM audit_entries WHERE seq > 2",
    "truncate": "TRUNCATE audit_entries",
    "disable the triggers": "ALTER TABLE audit_entries DISABLE TRIGGER USER",
    "disable the append trigger": "ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append",
    "drop the append-only trigger": "DROP TRIGGER audit_entries_no_update_delete ON audit_entries",
    "alter a column": "ALTER TABLE audit_entries ALTER COLUMN reason TYPE varchar(10)",
    "rewind the head": "UPDATE audit_chain_head SET last_seq = 2",
    "delete the head": "DELETE FROM audit_chain_head",
    "truncate the head": "TRUNCATE audit_chain_head",
    "lock the head directly": "SELECT * FROM audit_chain_head FOR UPDATE",
    "bypass triggers": "SET session_replication_role = replica",
    "write a purge checkpoint": "INSERT INTO audit_checkpoints (created_at, purged_through_seq, "
    "purged_through_hash, purged_count, statement) VALUES (now(), 5, 'x', 5, '{}')",
    "create a shadow table": "CREATE TABLE audit_entries_shadow (seq bigint)",
    "call the append trigger": "SELECT audit_entries_append()",
}


@pytest.mark.parametrize("sql_text", list(ATTACKS.values()), ids=list(ATTACKS))
def test_app_role_cannot_change_history_or_the_head(committed_app, pg_url, sql_text):
    fill(committed_app, 5)
    before = head(pg_url)
    with (
        psycopg.connect(libpq(pg_url)) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(sql_text)
    assert head(pg_url) == before == (5, before[1])
    assert count(pg_url) == 5


def _forged(seq: int, prev: str, **fields) -> tuple[str, str]:
    body = {
        "_prev_hash": prev,
        "_seq": seq,
        "action": "orders:order:refund",
        "actor": {"email": "mallory@example.test", "roles": ["admin"], "sub": "sub-mallory"},
        "after": None,
        "before": None,
        "details": {},
        "outcome": "success",
        "params": {},
        "reason": "looks legitimate",
        "request": {},
        "target": {"id": "ORD-1", "type": "order"},
        "ticket": None,
        "ts": format_ts(utcnow()),
    }
    body.update(fields)
    canonical = canonical_json(body)
    return canonical, entry_hash(canonical)


def _insert(conn, seq: int, prev: str, digest: str, canonical: str, *, reason: str = "x") -> None:
    conn.execute(
        "INSERT INTO audit_entries (seq, ts, actor_roles, action, outcome, reason, details, "
        "prev_hash, hash, canonical) VALUES (%s, now(), '[]', 'a:b:c', 'success', %s, '{}', "
        "%s, %s, %s)",
        (seq, reason, prev, digest, canonical),
    )


@pytest.mark.parametrize(
    "case", ["behind the head", "ahead of the head", "wrong prev hash", "wrong hash", "moved"]
)
def test_app_role_can_append_only_at_the_head(committed_app, pg_url, case):
    fill(committed_app, 5)
    last_seq, last_hash = head(pg_url)
    seq, prev = {
        "behind the head": (3, last_hash),
        "ahead of the head": (last_seq + 2, last_hash),
        "wrong prev hash": (last_seq + 1, "e" * 64),
        "wrong hash": (last_seq + 1, last_hash),
        "moved": (last_seq + 1, last_hash),
    }[case]
    canonical, digest = _forged(seq, prev)
    if case == "wrong hash":
        digest = "d" * 64
    if case == "moved":  # a canonical form that claims another position than its row
        canonical, digest = _forged(seq + 1, prev)
    with (
        psycopg.connect(libpq(pg_url)) as conn,
        pytest.raises((psycopg.errors.CheckViolation, psycopg.errors.UniqueViolation)),
        conn.transaction(),
    ):
        conn.execute("SELECT * FROM audit_chain_head_lock()")
        _insert(conn, seq, prev, digest, canonical)
    assert head(pg_url) == (last_seq, last_hash) and count(pg_url) == 5


def test_display_columns_are_derived_from_what_was_hashed(committed_app, pg_url):
    """A well-formed append at the head is accepted, but its columns say what the hash covers."""
    fill(committed_app, 2)
    last_seq, last_hash = head(pg_url)
    canonical, digest = _forged(last_seq + 1, last_hash, reason="the hashed reason")
    with psycopg.connect(libpq(pg_url)) as conn, conn.transaction():
        conn.execute("SELECT * FROM audit_chain_head_lock()")
        _insert(conn, last_seq + 1, last_hash, digest, canonical, reason="a different reason")
    assert head(pg_url) == (last_seq + 1, digest)
    with committed_app.app_context():
        e = db.session().get(AuditEntry, last_seq + 1)
        assert e.reason == "the hashed reason" and e.action == "orders:order:refund"
        assert e.actor_email == "mallory@example.test" and display_problems(e) == []


def test_owner_must_drop_a_trigger_to_rewind_the_head(committed_app, pg_owner_url):
    fill(committed_app, 4)
    with (
        psycopg.connect(libpq(pg_owner_url)) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("UPDATE audit_chain_head SET last_seq = 1")
    assert head(pg_owner_url)[0] == 4


def test_create_app_role_command_sets_up_a_fresh_role(
    committed_app, pg_owner_url, pg_superuser_url
):
    name = f"console_app_cli_{uuid.uuid4().hex[:6]}"
    runner = committed_app.test_cli_runner()
    try:
        result = runner.invoke(
            args=["db", "create-app-role", name, "--password-env", "CONSOLE_TEST_APP_PW"],
            env={"CONSOLE_TEST_APP_PW": "s3cret-for-the-test"},
        )
        assert result.exit_code == 0, result.output
        assert f"application role {name} ready" in result.output
        assert "s3cret" not in result.output
        from console.dbroles import url_for_role

        url = url_for_role(pg_owner_url, name, "s3cret-for-the-test")
        assert privileges(url)["audit_entries"] == ["SELECT", "INSERT"]
        # Running it again is harmless (grants re-applied).
        again = runner.invoke(args=["db", "create-app-role", name])
        assert again.exit_code == 0, again.output
    finally:
        with psycopg.connect(libpq(pg_superuser_url), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def test_create_app_role_refuses_the_owner_and_superusers(
    committed_app, pg_owner_url, pg_admin_url
):
    runner = committed_app.test_cli_runner()
    own = runner.invoke(args=["db", "create-app-role", str(role_of(pg_owner_url))])
    assert own.exit_code != 0 and "needs a role of its own" in own.output
    superuser = str(role_of(pg_admin_url))
    su = runner.invoke(args=["db", "create-app-role", superuser])
    assert su.exit_code != 0 and "superuser" in su.output


def test_db_upgrade_runs_as_the_owner_and_keeps_the_grants(committed_app, pg_url):
    result = committed_app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "re-applied" in result.output
    assert privileges(pg_url)["audit_entries"] == ["SELECT", "INSERT"]


def test_the_log_starts_at_genesis_for_the_app_role(app):
    with app.app_context():
        s = db.session()
        e = append(s, action="tests:entry:first", outcome="success", actor=None)
        first = s.scalar(select(AuditEntry).order_by(AuditEntry.seq))
        assert first is not None and (first.seq == 1) == (first.prev_hash == GENESIS_HASH)
        assert e.hash == entry_hash(e.canonical)
