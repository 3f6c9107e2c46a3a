"""Test fixtures: real PostgreSQL, a real OIDC provider, the real Stripe SDK.

- `pg_url`: a fresh PostgreSQL database per test session, migrated with
  Alembic by its owner role (`pg_owner_url`) and used by the application
  role with the production grants (`console.dbroles`), dropped at the end.
- `app` + `client`: each test runs inside a transaction rolled back at the
  end; the app's sessions join it through savepoints, so service commits
  work and leave nothing behind.
- `auth`: logs in through the mock identity provider (oauth2-mock-server),
  exactly as a browser would: /login -> IdP /authorize -> /auth/callback.
- `committed_app` / `live_server`: no outer transaction, for threads,
  processes and the browser; `clean_db` empties the tables between tests.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from werkzeug.serving import make_server

from console import create_app
from console.db import get_db
from devtools.idp import MockIdP
from devtools.stripe_double import StripeDouble
from devtools.supplier_double import SupplierDouble

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
MACHINE_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
ADMIN_URL: list[str] = []
"""The superuser URL the `pg_admin_url` fixture chose (for set-up helpers)."""

IDENTITIES: dict[str, dict[str, Any]] = {
    "support": {"sub": "sub-support-1", "email": "support@example.test", "groups": ["ops-support"]},
    "admin": {"sub": "sub-admin-1", "email": "admin@example.test", "groups": ["ops-admins"]},
    "admin2": {"sub": "sub-admin-2", "email": "admin2@example.test", "groups": ["ops-admins"]},
    "auditor": {"sub": "sub-auditor-1", "email": "auditor@example.test", "groups": ["ops-audit"]},
    "nogroup": {"sub": "sub-nogroup-1", "email": "nogroup@example.test", "groups": ["marketing"]},
}
ROLES = ("support", "admin", "auditor")
ROLE_MAP = "ops-support=support,ops-admins=admin,ops-audit=auditor"


# --------------------------------------------------------------------------- peers


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """The server the tests use: TEST_PG_ADMIN_URL, else 127.0.0.1:5432, else embedded.

    The fallback is the demo's embedded PostgreSQL wheel, in its own folder, so
    the suite also runs on a machine with no PostgreSQL server installed
    (`TEST_PG_ADMIN_URL=embedded` picks it even when the machine has one).
    """
    explicit = os.environ.get("TEST_PG_ADMIN_URL", "")
    if explicit == "embedded":
        explicit = ""
    elif explicit or _answers(MACHINE_PG):
        ADMIN_URL[:] = [explicit or MACHINE_PG]
        yield ADMIN_URL[0]
        return
    from console import embedded_db

    pgdata = embedded_db.server_dir(ROOT / "instance" / "test")
    started = not embedded_db.is_running(pgdata)
    uri = embedded_db.start(pgdata)
    ADMIN_URL[:] = [embedded_db.libpq_url(uri, "postgres")]
    yield ADMIN_URL[0]
    if started:
        embedded_db.stop(pgdata)


@dataclass(frozen=True)
class PgDatabase:
    """The session's database and the three roles that reach it."""

    name: str
    app_url: str
    """DATABASE_URL: the application role (append-only on the audit tables)."""
    owner_url: str
    """DATABASE_MIGRATION_URL: owns the tables, runs the migrations."""
    superuser_url: str
    """Test set-up only (bypassing triggers to empty tables)."""


OWNER_URLS: dict[str, str] = {}
CHECKPOINT_DIR = Path(tempfile.mkdtemp(prefix="console-test-checkpoints-"))
atexit.register(shutil.rmtree, CHECKPOINT_DIR, True)


@pytest.fixture(scope="session")
def pg_database(pg_admin_url: str) -> Iterator[PgDatabase]:
    """A fresh database owned by a migration role, used by an application role.

    Migrations run as the owner; the app connects as the role made by
    `console.dbroles.create_app_role`, exactly as in production, so every test
    runs with the production grants.
    """
    from psycopg import sql
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from console.dbroles import create_app_role, url_for_role

    suffix = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
    name = f"console_test_{suffix}"
    owner, app_role = f"console_owner_{suffix}", f"console_app_{suffix}"
    owner_password = secrets.token_hex(16)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(
                sql.Identifier(owner), sql.Literal(owner_password)
            )
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(*map(sql.Identifier, (name, owner)))
        )
    superuser = make_url(pg_admin_url).set(drivername="postgresql+psycopg", database=name)
    superuser_url = superuser.render_as_string(hide_password=False)
    owner_url = url_for_role(superuser_url, owner, owner_password)
    from alembic import command

    from console.cli import alembic_config

    command.upgrade(alembic_config(owner_url), "head")
    app_password = secrets.token_hex(16)
    create_app_role(owner_url, app_role, app_password)
    app_url = url_for_role(superuser_url, app_role, app_password)
    OWNER_URLS[app_url] = owner_url
    yield PgDatabase(name, app_url, owner_url, superuser_url)
    create_engine(app_url).dispose()
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        for role in (app_role, owner):
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture(scope="session")
def pg_url(pg_database: PgDatabase) -> str:
    """DATABASE_URL of the tests: the application role."""
    return pg_database.app_url


@pytest.fixture(scope="session")
def pg_owner_url(pg_database: PgDatabase) -> str:
    return pg_database.owner_url


@pytest.fixture(scope="session")
def pg_superuser_url(pg_database: PgDatabase) -> str:
    return pg_database.superuser_url


def libpq(url: str) -> str:
    """A SQLAlchemy URL as psycopg.connect takes it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture(scope="session")
def idp() -> Iterator[MockIdP]:
    server = MockIdP.start()
    for hint, claims in IDENTITIES.items():
        server.add_identity(hint, **claims)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def stripe_double() -> Iterator[StripeDouble]:
    double = StripeDouble.start()
    yield double
    double.stop()


@pytest.fixture
def stripe(stripe_double: StripeDouble) -> Iterator[StripeDouble]:
    """The double with no faults, rate limit or request log left from another test."""
    stripe_double.clear_faults()
    stripe_double.set_rate_limit(0)
    stripe_double.clear_requests_log()
    yield stripe_double
    stripe_double.clear_faults()
    stripe_double.set_rate_limit(0)


@pytest.fixture(scope="session")
def supplier_double() -> Iterator[SupplierDouble]:
    double = SupplierDouble.start()
    yield double
    double.stop()


@pytest.fixture
def supplier(supplier_double: SupplierDouble) -> Iterator[SupplierDouble]:
    """The supplier double with no orders, faults or request log left from another test."""
    supplier_double.reset()
    yield supplier_double
    supplier_double.reset()


@pytest.fixture
def stripe_client(stripe_double: StripeDouble):
    """The real stripe SDK pointed at the double, for arranging Stripe-side state."""
    import stripe as stripe_sdk

    return stripe_sdk.StripeClient(
        "sk_test_console",
        base_addresses={"api": stripe_double.url},
        http_client=stripe_sdk.RequestsClient(timeout=10),
        max_network_retries=0,
    )


def app_config(pg_url: str, idp: MockIdP, stripe_double: StripeDouble, **extra: Any) -> dict:
    config = {
        "CONSOLE_ENV": "test",
        "DATABASE_URL": pg_url,
        "DATABASE_MIGRATION_URL": OWNER_URLS.get(pg_url, ""),
        "AUDIT_CHECKPOINT_DIR": str(CHECKPOINT_DIR),
        "SECRET_KEY": "test-secret-key-that-is-long-enough-for-prod-0123456789",
        "OIDC_ISSUER": idp.issuer,
        "OIDC_CLIENT_ID": "console-test",
        "OIDC_CLIENT_SECRET": "console-test-secret",
        "ROLE_MAP": ROLE_MAP,
        "STRIPE_API_KEY": "sk_test_console",
        "STRIPE_WEBHOOK_SECRET": "whsec_test_console",
        "STRIPE_API_BASE": stripe_double.url,
        "STRIPE_TIMEOUT_SECONDS": "2",
        "AUDIT_SIGNING_KEY": "",
    }
    config.update(extra)
    return config


# --------------------------------------------------------------------------- app


SUPPLIER_TIMEOUT = 1.0


@pytest.fixture(scope="session")
def session_app(
    pg_url: str, idp: MockIdP, stripe_double: StripeDouble, supplier_double: SupplierDouble
) -> Flask:
    return create_app(
        app_config(
            pg_url,
            idp,
            stripe_double,
            SUPPLIER_API_BASE=supplier_double.url,
            SUPPLIER_TIMEOUT_SECONDS=str(SUPPLIER_TIMEOUT),
        )
    )


@pytest.fixture
def app(session_app: Flask, idp: MockIdP) -> Iterator[Flask]:
    """The app with every session joined to one outer transaction, rolled back."""
    database = get_db(session_app)
    conn = database.engine.connect()
    outer = conn.begin()
    database.sessionmaker.configure(bind=conn, join_transaction_mode="create_savepoint")
    try:
        yield session_app
    finally:
        database.sessionmaker.configure(
            bind=database.engine, join_transaction_mode="conditional_savepoint"
        )
        outer.rollback()
        conn.close()
        idp.set_fault("none")


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


class AuthActions:
    """Log in through the identity provider, as a browser would."""

    def __init__(self, client: FlaskClient, idp: MockIdP) -> None:
        self.client = client
        self.idp = idp

    def start(self, hint: str, *, next_url: str = "/", step_up: bool = False) -> str:
        """Begin the flow; return the IdP authorization URL the app redirected to."""
        params: dict[str, Any] = {"sso": 1, "login_hint": hint, "next": next_url}
        if step_up:
            params["step_up"] = 1
        resp = self.client.get("/login", query_string=params)
        assert resp.status_code == 302, resp.data[:500]
        location = resp.headers["Location"]
        assert location.startswith(self.idp.issuer), location
        return location

    def authorize(self, authorize_url: str) -> str:
        """Let the IdP answer the authorization request; return the callback path."""
        resp = requests.get(authorize_url, allow_redirects=False, timeout=10)
        assert resp.status_code in (302, 303), resp.text[:300]
        callback = urlsplit(resp.headers["Location"])
        return f"{callback.path}?{callback.query}"

    def login(self, hint: str, *, next_url: str = "/", step_up: bool = False) -> Any:
        callback = self.authorize(self.start(hint, next_url=next_url, step_up=step_up))
        return self.client.get(callback)

    def as_role(self, role: str) -> Any:
        resp = self.login(role)
        assert resp.status_code == 302, resp.data[:800]
        return resp

    def logout(self) -> Any:
        return self.client.post("/logout", data={"csrf_token": self.csrf_token()})

    def csrf_token(self, path: str = "/") -> str:
        resp = self.client.get(path)
        html = resp.get_data(as_text=True)
        marker = '"X-CSRFToken": "'
        start = html.index(marker) + len(marker)
        return html[start : html.index('"', start)]


@pytest.fixture
def auth(client: FlaskClient, idp: MockIdP) -> AuthActions:
    return AuthActions(client, idp)


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


# --------------------------------------------------------------------------- committed


TRUNCATE_SKIP = {"alembic_version", "audit_chain_head"}


def superuser_url_of(app: Flask) -> str:
    """The app's database, reached as the test server's superuser (set-up only)."""
    from sqlalchemy.engine import make_url

    name = make_url(app.config["SETTINGS"].database_url).database
    url = make_url(ADMIN_URL[0]).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False)


def truncate_all(app: Flask) -> None:
    """Empty every table and the checkpoint directory (audit triggers bypassed)."""
    from sqlalchemy import create_engine, pool

    engine = create_engine(superuser_url_of(app), poolclass=pool.NullPool)
    checkpoints = Path(app.config["SETTINGS"].audit_checkpoint_dir)
    if checkpoints.is_dir():
        for path in checkpoints.glob("checkpoint-*.json"):
            path.unlink()
    with engine.begin() as conn:
        tables = [
            r[0]
            for r in conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
            if r[0] not in TRUNCATE_SKIP
        ]
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        conn.execute(
            text(
                "UPDATE audit_chain_head SET last_seq = 0, last_hash = :h, max_ts = NULL, "
                "max_disorder = interval '0' WHERE id = 1"
            ),
            {"h": "0" * 64},
        )


@pytest.fixture
def committed_app(session_app: Flask) -> Iterator[Flask]:
    """The app committing for real (threads, processes, browser); emptied after."""
    truncate_all(session_app)
    yield session_app
    truncate_all(session_app)


def wait_for(predicate: Any, timeout: float = 60.0, every: float = 0.2) -> Any:
    """Poll `predicate` until it returns something truthy (or time is up: its last value)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    return predicate()


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian Chromium through Playwright, one per session for every browser test.

    Here, not in tests/browser: Playwright's sync API allows one instance per
    thread, so tests/browser and tests/demo must share it.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    def __init__(self, app: Flask) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = make_server("127.0.0.1", self.port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


@pytest.fixture
def live_server(committed_app: Flask) -> Iterator[LiveServer]:
    with LiveServer(committed_app) as server:
        yield server


# --------------------------------------------------------------------------- job workers


def last_worker_id(conn: Any) -> int:
    return int(conn.execute(text("SELECT max(id) FROM procrastinate_workers")).scalar() or 0)


class JobWorker:
    """A real `flask --app wsgi jobs worker` process against the test database."""

    count = 0

    def __init__(self, env: dict[str, str], *args: str) -> None:
        JobWorker.count += 1
        ARTIFACTS.mkdir(exist_ok=True)
        self.log_path = ARTIFACTS / f"worker-{os.getpid()}-{JobWorker.count}.log"
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "flask"), "--app", "wsgi", "jobs", "worker", *args],
            env=env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_registered(self, database_url: str, after_id: int, timeout: float = 120.0) -> None:
        """Return once a worker newer than `after_id` registered (it fetches jobs then)."""
        import time

        from sqlalchemy import create_engine

        engine = create_engine(database_url)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"worker exited: {self.log_path.read_text()[-3000:]}")
                with engine.connect() as conn:
                    if last_worker_id(conn) > after_id:
                        return
                time.sleep(0.2)
        finally:
            engine.dispose()
        raise RuntimeError(f"worker did not start: {self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, no heartbeat any more."""
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


def process_env(pg_url: str, idp: MockIdP, stripe_double: StripeDouble, **extra: Any) -> dict:
    """The environment of a console process (worker, CLI) configured like `session_app`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "OIDC_"))}
    env.update({k: str(v) for k, v in app_config(pg_url, idp, stripe_double, **extra).items()})
    return env


@pytest.fixture
def start_worker(
    committed_app: Flask,
    pg_url: str,
    idp: MockIdP,
    stripe_double: StripeDouble,
    supplier_double: SupplierDouble,
):
    """Start real worker processes (no schedule unless asked); all stopped after the test."""
    workers: list[JobWorker] = []

    def start(*args: str, schedule: bool = False, **env_extra: Any) -> JobWorker:
        env = process_env(
            pg_url,
            idp,
            stripe_double,
            JOB_STALLED_SECONDS="3",
            SUPPLIER_API_BASE=supplier_double.url,
            SUPPLIER_TIMEOUT_SECONDS=str(SUPPLIER_TIMEOUT),
            **env_extra,
        )
        flags = ["--heartbeat", "1", *args]
        if not schedule:
            flags.append("--no-schedule")
        with get_db(committed_app).engine.connect() as conn:
            before = last_worker_id(conn)
        worker = JobWorker(env, *flags)
        workers.append(worker)
        worker.wait_registered(pg_url, before)
        return worker

    yield start
    for worker in workers:
        worker.stop()
