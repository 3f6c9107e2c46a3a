"""Atomicity: an action and its audit entry commit together or not at all.

Faults are injected in PostgreSQL itself, between the state change and the
audit write and at the commit: triggers (installed by the test's superuser,
removed afterwards) raise an error or terminate the very connection that is
running the action, (a) right after the state change, (b) right after the
audit entry is written, (c) during COMMIT (a deferred constraint trigger).
Over `RELIABILITY_RUNS` randomised runs (1,000 by default), each run checks
the figure: 0 actions without their entry, 0 entries without their action,
and every failed attempt has its `failed` entry. A second test SIGKILLs a
real gunicorn at random moments while notes are being added.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest
import requests

from console import db
from tests.actions.helpers import confirm_form
from tests.conftest import AuthActions, libpq
from tests.factories import make_order
from tests.reliability.conftest import RUNS, browser_login

SEED = int(os.environ.get("RELIABILITY_SEED", "20261202"))
WHERE = ("state", "audit", "commit")
FAULTS = ["none", *(f"{w}:{how}" for w in WHERE for how in ("error", "kill"))]

INSTALL = """
CREATE TABLE reliability_fault (id int PRIMARY KEY, kind text NOT NULL);
INSERT INTO reliability_fault VALUES (1, 'none');
CREATE FUNCTION reliability_inject() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    wanted text;
BEGIN
    SELECT kind INTO wanted FROM public.reliability_fault WHERE id = 1;
    IF wanted = TG_ARGV[0] || ':error' THEN
        RAISE EXCEPTION 'injected fault (%)', wanted;
    ELSIF wanted = TG_ARGV[0] || ':kill' THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER reliability_state AFTER INSERT ON order_notes
    FOR EACH ROW EXECUTE FUNCTION reliability_inject('state');
CREATE TRIGGER reliability_audit AFTER INSERT ON audit_entries
    FOR EACH ROW WHEN (NEW.outcome = 'success') EXECUTE FUNCTION reliability_inject('audit');
CREATE CONSTRAINT TRIGGER reliability_commit AFTER INSERT ON audit_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.outcome = 'success') EXECUTE FUNCTION reliability_inject('commit');
"""

REMOVE = """
DROP TRIGGER IF EXISTS reliability_commit ON audit_entries;
DROP TRIGGER IF EXISTS reliability_audit ON audit_entries;
DROP TRIGGER IF EXISTS reliability_state ON order_notes;
DROP FUNCTION IF EXISTS reliability_inject();
DROP TABLE IF EXISTS reliability_fault;
"""


@pytest.fixture
def faults(committed_app, pg_superuser_url) -> Iterator[psycopg.Connection]:
    conn = psycopg.connect(libpq(pg_superuser_url), autocommit=True)
    conn.execute(REMOVE)
    conn.execute(INSTALL)
    try:
        yield conn
    finally:
        conn.execute(REMOVE)
        conn.close()


def tally(conn: psycopg.Connection, external_id: str) -> tuple[int, int, int]:
    """(notes on the order, success entries, failed entries) for orders:note:add."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM order_notes n JOIN orders o ON o.id = n.order_id "
        "        WHERE o.external_id = %(id)s),"
        " (SELECT count(*) FROM audit_entries WHERE action = 'orders:note:add' "
        "        AND target_id = %(id)s AND outcome = 'success'),"
        " (SELECT count(*) FROM audit_entries WHERE action = 'orders:note:add' "
        "        AND target_id = %(id)s AND outcome = 'failed')",
        {"id": external_id},
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


@pytest.mark.slow
def test_faults_between_state_change_and_audit_never_split_them(committed_app, idp, faults):
    rng = random.Random(SEED)
    with committed_app.app_context():
        external_id = make_order(db.session()).external_id
        db.session().commit()
    client = committed_app.test_client()
    AuthActions(client, idp).as_role("support")
    form = confirm_form(client, "orders:note:add", external_id)
    seen: Counter[str] = Counter()
    problems: list[str] = []
    before = tally(faults, external_id)
    for run in range(RUNS):
        kind = rng.choice(FAULTS)
        seen[kind] += 1
        faults.execute("UPDATE reliability_fault SET kind = %s WHERE id = 1", (kind,))
        data = {**form, "idempotency_key": str(uuid.uuid4()), "reason": f"note {run} ({kind})"}
        status = client.post(f"/actions/orders:note:add/{external_id}", data=data).status_code
        after = tally(faults, external_id)
        delta = tuple(a - b for a, b in zip(after, before, strict=True))
        expected = (1, 1, 0) if kind == "none" else (0, 0, 1)
        if delta != expected or status != (303 if kind == "none" else 500):
            problems.append(f"run {run} ({kind}): status {status}, notes/success/failed {delta}")
        before = after
    faults.execute("UPDATE reliability_fault SET kind = 'none' WHERE id = 1")
    notes, successes, failures = tally(faults, external_id)
    assert problems == [], f"{len(problems)} of {RUNS} runs split an action from its entry"
    assert notes == successes == seen["none"]
    assert failures == RUNS - seen["none"]
    assert all(seen[k] for k in FAULTS), seen  # every fault kind was exercised


@pytest.mark.slow
def test_sigkill_at_random_moments_never_splits_an_action_from_its_entry(
    committed_app, console_process, pg_superuser_url
):
    """A real gunicorn, killed at random while a client keeps adding notes."""
    rng = random.Random(SEED)
    kills = max(5, RUNS // 100)
    with committed_app.app_context():
        external_id = make_order(db.session()).external_id
        db.session().commit()
    server = console_process()
    user = browser_login(server.url, "support")
    stop = threading.Event()
    sent = Counter[str]()

    def keep_adding() -> None:
        form: dict[str, str] | None = None
        while not stop.is_set():
            try:
                if form is None:
                    page = user.get(
                        f"{server.url}/actions/orders:note:add/{external_id}", timeout=5
                    )
                    from tests.actions.helpers import hidden_fields

                    form = hidden_fields(page.text)
                # A new reason each time: the same one again would be a recognised repeat.
                reason = f"a note, again ({sum(sent.values())})"
                data = {**form, "idempotency_key": str(uuid.uuid4()), "reason": reason}
                resp = user.post(
                    f"{server.url}/actions/orders:note:add/{external_id}",
                    data=data,
                    timeout=5,
                    allow_redirects=False,
                )
                sent[str(resp.status_code)] += 1
            except (requests.RequestException, KeyError):
                sent["no answer"] += 1
                time.sleep(0.05)

    worker = threading.Thread(target=keep_adding, daemon=True)
    worker.start()
    try:
        for _ in range(kills):
            time.sleep(rng.uniform(0.05, 0.6))
            server.kill()
            server.start()
    finally:
        stop.set()
        worker.join(10)
    with psycopg.connect(libpq(pg_superuser_url), autocommit=True) as conn:
        notes, successes, _failed = tally(conn, external_id)
    assert sent["303"] > 0 and sent["no answer"] > 0, sent  # it was killed mid-stream
    assert notes == successes, f"{notes} notes but {successes} success entries after {kills} kills"
    assert notes >= sent["303"]  # every answered success is there (killed ones may be too)
