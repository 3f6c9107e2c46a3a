"""Metrics under several gunicorn workers, logs without secrets, health that tells the truth."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from console import db
from console.logs import configure_logging, redact
from tests.conftest import ROOT, free_port, process_env


def _counts(metrics: str, endpoint: str) -> int:
    total = 0
    for line in metrics.splitlines():
        if line.startswith("http_request_duration_seconds_count{") and (
            f'endpoint="{endpoint}"' in line
        ):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


@pytest.mark.slow
def test_metrics_of_two_gunicorn_workers_add_up_and_the_access_log_has_no_query(
    pg_url, idp, stripe_double, tmp_path
):
    """60 requests over 2 workers: every scrape reports 60, whichever worker answers it."""
    port = free_port()
    env = process_env(
        pg_url,
        idp,
        stripe_double,
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKERS="2",
        GUNICORN_ACCESS_LOG="-",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    log = (tmp_path / "gunicorn.log").open("w")
    server = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/healthz", timeout=10).status_code in (200, 503):
                    break
            except requests.RequestException:
                time.sleep(0.3)
        before = _counts(requests.get(f"{base}/metrics", timeout=5).text, "ops.healthz")

        def hit(_: int) -> int:
            with requests.Session() as s:  # a new connection each: spread over the workers
                return s.get(f"{base}/healthz", timeout=10).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(hit, range(60))) <= {200}
        scrapes = [
            _counts(requests.get(f"{base}/metrics", timeout=5).text, "ops.healthz")
            for _ in range(6)
        ]
        assert scrapes == [before + 60] * 6, scrapes
        # The OIDC code and state of a callback never reach the access log.
        requests.get(f"{base}/auth/callback?code=SECRETCODE123&state=SECRETSTATE9", timeout=5)
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()
    logged = (tmp_path / "gunicorn.log").read_text()
    assert "GET /auth/callback" in logged
    assert "SECRETCODE123" not in logged and "SECRETSTATE9" not in logged


def test_logs_are_json_and_carry_no_secret_token_code_or_card_number(app, auth, client):
    """A login, an action and a webhook logged as JSON: 0 secrets in the captured text."""
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    try:
        auth.as_role("support")
        client.get("/auth/callback?code=OIDCCODE0000001&state=OIDCSTATE000001")
        logging.getLogger("console.test").warning(
            "calling with sk_live_abcdefghijkl and whsec_abcdefghij, card 4242 4242 4242 4242, "
            "Authorization: Bearer eyJhbGciOi.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2ln"
        )
        client.get("/orders/stuck?q=4000 0566 5566 5556")
    finally:
        configure_logging("text", stream=None)
    captured = stream.getvalue()
    lines = [json.loads(line) for line in captured.splitlines() if line.strip()]
    assert lines and all("level" in r and "message" in r for r in lines)
    requests_logged = [r for r in lines if r["logger"] == "console.access"]
    assert requests_logged and all(
        {"request_id", "route", "status", "duration_ms"} <= set(r) for r in requests_logged
    )
    assert any(r.get("user") == "support@example.test" for r in requests_logged)
    for secret in (
        "OIDCCODE0000001",
        "OIDCSTATE000001",
        "sk_live_abcdefghijkl",
        "whsec_abcdefghij",
        "4242 4242 4242 4242",
        "4000 0566 5566 5556",
        "eyJhbGciOi.eyJzdWIiOiJ4In0",
        "console-test-secret",
    ):
        assert secret not in captured, secret
    assert "**** **** **** 4242" in captured


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("key sk_test_51Habcdefg here", "sk_test_[redacted]"),
        ("/auth/callback?code=abc123&state=xyz", "code=[redacted]&state=[redacted]"),
        ("pan 4111-1111-1111-1111.", "pan ****-****-****-1111."),
        ("order 1234567890123 is not a card", "order 1234567890123 is not a card"),
    ],
)
def test_redact_masks_what_must_not_be_logged(raw, masked):
    assert masked in redact(raw)


_FRAGMENTS = [
    "sk_live_abcdefgh",
    "SK_TEST_ABCDEFGH",
    "rk_test_51Habcd",
    "whsec_abc+/=_-xyz",
    "Bearer abc.def-ghi_jkl",
    "BEARER  tokentokentoken",
    "code=abc",
    "STATE=xyz",
    "id_token_hint=eyJ",
    "eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.SflKxwRJSMeKKF2Q",
    "4242 4242 4242 4242",
    "=",
    "_",
    " ",
]


@given(st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=12)), max_size=8))
@settings(max_examples=300, deadline=None)
def test_redact_quick_check_never_skips_a_secret(parts):
    """The one-search shortcut gives what all five substitutions give, for any text."""
    from console.cardnumbers import mask_pans
    from console.logs import _SECRETS

    text = "".join(parts)
    slow = text
    for pattern, replacement in _SECRETS:
        slow = pattern.sub(replacement, slow)
    assert redact(text) == mask_pans(slow)


def test_healthz_is_503_when_migrations_are_behind(committed_app, pg_owner_url):
    """A database two migrations behind the code: 503 for the load balancer, with why."""
    import psycopg

    from tests.conftest import libpq

    client = committed_app.test_client()
    assert client.get("/healthz").status_code == 200
    with psycopg.connect(libpq(pg_owner_url), autocommit=True) as conn:
        head = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        conn.execute("UPDATE alembic_version SET version_num = '0002'")
        try:
            resp = client.get("/healthz")
            anonymous = client.get("/healthz", environ_base={"REMOTE_ADDR": "203.0.113.9"})
        finally:
            conn.execute("UPDATE alembic_version SET version_num = %s", (head,))
    assert resp.status_code == 503
    assert "migrations are behind" in resp.get_data(as_text=True)
    assert anonymous.status_code == 503 and anonymous.get_json() == {"status": "down"}


def test_request_id_is_on_the_response_and_the_audit_entry(app, auth, client):
    from sqlalchemy import select

    from console.audit.models import AuditEntry

    resp = auth.as_role("support")
    rid = resp.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    with app.app_context():
        entry = db.session().scalar(
            select(AuditEntry).where(AuditEntry.action == "auth:login:success")
        )
        assert entry.request_id == rid
