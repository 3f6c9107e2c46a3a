"""Machine endpoints and logs: /metrics and /healthz details need the token or an allowed
network, X-Request-Id only from a trusted proxy, no OIDC secrets in access logs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from console import create_app, db
from console.audit.models import AuditEntry
from console.db import get_db
from tests.conftest import app_config, free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "metrics-token-0123456789abcdef"
OUTSIDE = {"REMOTE_ADDR": "203.0.113.9"}
INSIDE = {"REMOTE_ADDR": "10.1.2.3"}


@pytest.fixture(scope="module")
def machine_app(pg_url, idp, stripe_double):
    return create_app(
        app_config(
            pg_url, idp, stripe_double, METRICS_TOKEN=TOKEN, METRICS_ALLOW_CIDRS="10.1.0.0/16"
        )
    )


def test_metrics_need_the_token_or_an_allowed_network(machine_app):
    """Figure: /metrics: 401 anonymous and with a wrong token; 200 with the token or from 10.1/16."""
    c = machine_app.test_client()
    anon = c.get("/metrics", environ_base=OUTSIDE)
    assert anon.status_code == 401 and "Bearer" in anon.headers["WWW-Authenticate"]
    assert "stuck_paid_orders" not in anon.get_data(as_text=True)
    wrong = c.get("/metrics", environ_base=OUTSIDE, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    ok = c.get("/metrics", environ_base=OUTSIDE, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and "stuck_paid_orders" in ok.get_data(as_text=True)
    assert c.get("/metrics", environ_base=INSIDE).status_code == 200


def test_healthz_tells_anonymous_callers_only_up_or_down(machine_app):
    """Figure: anonymous /healthz holds 1 key (status: up); the token gets database and jobs."""
    c = machine_app.test_client()
    anon = c.get("/healthz", environ_base=OUTSIDE)
    assert anon.status_code == 200 and anon.get_json() == {"status": "up"}
    full = c.get("/healthz", environ_base=OUTSIDE, headers={"Authorization": f"Bearer {TOKEN}"})
    body = full.get_json()
    assert body["database"] == "ok" and "payouts-auto-release" in body["jobs"]


def test_production_refuses_a_short_metrics_token():
    """Figure: a METRICS_TOKEN under 24 characters stops a production start with a reason."""
    from console.config import ConfigError, load_settings

    env = {
        "DATABASE_URL": "postgresql://x@db/x",
        "SECRET_KEY": "s" * 40,
        "OIDC_ISSUER": "https://idp.example",
        "OIDC_CLIENT_ID": "c",
        "OIDC_CLIENT_SECRET": "s",
        "ROLE_MAP": "a=admin",
        "STRIPE_API_KEY": "sk_test_x",
        "STRIPE_WEBHOOK_SECRET": "whsec_x",
        "METRICS_TOKEN": "short",
    }
    with pytest.raises(ConfigError, match="METRICS_TOKEN"):
        load_settings(env)
    env["METRICS_TOKEN"], env["METRICS_ALLOW_CIDRS"] = TOKEN, "10.0.0.0/8, not-a-net"
    with pytest.raises(ConfigError, match="not-a-net"):
        load_settings(env)


def login_failure_request_id(app, idp, headers) -> tuple[str, str | None]:
    """Trigger an audited request (a refused sign-in) and read its request id back."""
    c = app.test_client()
    resp = c.get("/auth/callback?error=access_denied", headers=headers)
    with app.app_context():
        entry = db.session().scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
        return resp.headers["X-Request-Id"], entry.request_id


def test_client_request_id_is_ignored_without_a_trusted_proxy(app, idp):
    """Figure: with PROXY_FIX_HOPS=0 a client's X-Request-Id reaches neither response nor audit."""
    answered, audited = login_failure_request_id(app, idp, {"X-Request-Id": "planted-id-123"})
    assert answered != "planted-id-123" and audited == answered


def test_request_id_from_a_trusted_proxy_is_kept(pg_url, idp, stripe_double):
    """Figure: with PROXY_FIX_HOPS=1 the proxy's X-Request-Id is the audited request id."""
    app = create_app(app_config(pg_url, idp, stripe_double, PROXY_FIX_HOPS="1"))
    database = get_db(app)
    conn = database.engine.connect()
    outer = conn.begin()  # as the `app` fixture: everything is rolled back after
    database.sessionmaker.configure(bind=conn, join_transaction_mode="create_savepoint")
    try:
        answered, audited = login_failure_request_id(
            app, idp, {"X-Request-Id": "proxy-id-456", "X-Forwarded-For": "198.51.100.7"}
        )
    finally:
        outer.rollback()
        conn.close()
    assert answered == "proxy-id-456" == audited


@pytest.mark.slow
def test_gunicorn_access_log_never_carries_the_oidc_code_or_state(
    pg_url, idp, stripe_double, tmp_path
):
    """Figure: 0 of 4 planted secrets (code, state in the URL and in a Referer) in the access log."""
    port = free_port()
    log = tmp_path / "access.log"
    env = {**os.environ, **app_config(pg_url, idp, stripe_double)}
    env["DATABASE_URL"] = pg_url.replace("postgresql+psycopg://", "postgresql://", 1)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(ROOT / "gunicorn.conf.py"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--access-logfile",
            str(log),
            "wsgi:app",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(60):
            try:
                requests.get(f"{base}/healthz", timeout=5)
                break
            except requests.RequestException:
                time.sleep(0.5)
        requests.get(
            f"{base}/auth/callback?code=SECRETCODE111&state=SECRETSTATE222&iss=x", timeout=5
        )
        requests.get(
            f"{base}/login",
            headers={"Referer": f"{base}/auth/callback?code=REFCODE333&state=REFSTATE444"},
            timeout=5,
        )
        time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    text = log.read_text()
    assert '"GET /auth/callback HTTP/1.1"' in text, text  # the path, never its query
    for secret in ("SECRETCODE111", "SECRETSTATE222", "REFCODE333", "REFSTATE444"):
        assert secret not in text, text
    assert "rid=" in text
