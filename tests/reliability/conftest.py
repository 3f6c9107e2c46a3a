"""Real processes for the reliability suite: gunicorn, the CLI, a browser-like client.

`console_process` starts the console under gunicorn with the production
config file (`gunicorn.conf.py`), as the application role, against
the session's PostgreSQL, the Stripe double (or a fault proxy in front of it)
and the mock IdP. Tests SIGKILL it, restart it, and run CLI commands
(`payouts resume`) as separate processes.

`RELIABILITY_RUNS` (default 1000) scales the randomised tests; set it
higher to run them longer on demand.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import requests

from tests.actions.helpers import hidden_fields
from tests.conftest import app_config, free_port, libpq

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
RUNS = int(os.environ.get("RELIABILITY_RUNS", "1000"))


def process_env(pg_url, idp, stripe_base: str, **extra: str) -> dict[str, str]:
    """The environment a console process gets: the test config, as strings."""

    class _Base:
        url = stripe_base

    config = app_config(pg_url, idp, _Base, **extra)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "STRIPE_"))}
    env.update({k: str(v) for k, v in config.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ConsoleProcess:
    """gunicorn serving wsgi:app in its own process group (so SIGKILL takes all of it)."""

    def __init__(self, env: dict[str, str], log: Path, workers: int = 1) -> None:
        self.env = env
        self.log = log
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ConsoleProcess:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [
                str(VENV_BIN / "gunicorn"),
                "-c",
                str(ROOT / "gunicorn.conf.py"),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(self.workers),
                "wsgi:app",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log.read_text()[-2000:]}")
            try:
                requests.get(f"{self.url}/healthz", timeout=2)
                return self
            except requests.RequestException:
                time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL the master and its workers at once: nothing gets to clean up."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def console_process(
    pg_url, idp, stripe_double, committed_app, tmp_path
) -> Iterator[Callable[..., ConsoleProcess]]:
    """Start consoles (gunicorn) on demand; all are stopped at the end of the test."""
    started: list[ConsoleProcess] = []

    def start(stripe_base: str | None = None, workers: int = 1, **extra: str) -> ConsoleProcess:
        env = process_env(pg_url, idp, stripe_base or stripe_double.url, **extra)
        server = ConsoleProcess(env, tmp_path / f"gunicorn-{len(started)}.log", workers).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def run_cli(pg_url, idp, stripe_base: str, *args: str, timeout: float = 120) -> Any:
    """Run `flask --app wsgi ...` as its own process, as cron or a job worker would."""
    return subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "wsgi", *args],
        cwd=ROOT,
        env=process_env(pg_url, idp, stripe_base),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def spawn_cli(pg_url, idp, stripe_base: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(VENV_BIN / "flask"), "--app", "wsgi", *args],
        cwd=ROOT,
        env=process_env(pg_url, idp, stripe_base),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def browser_login(base_url: str, hint: str) -> requests.Session:
    """Sign in through the mock IdP over real HTTP, as a browser would."""
    session = requests.Session()
    start = session.get(
        f"{base_url}/login",
        params={"sso": 1, "login_hint": hint, "next": "/"},
        allow_redirects=False,
        timeout=10,
    )
    assert start.status_code == 302, start.text[:300]
    authorize = requests.get(start.headers["Location"], allow_redirects=False, timeout=10)
    assert authorize.status_code in (302, 303), authorize.text[:300]
    callback = urlsplit(authorize.headers["Location"])
    done = session.get(
        f"{base_url}{callback.path}?{callback.query}", allow_redirects=False, timeout=10
    )
    assert done.status_code == 302, done.text[:300]
    return session


def confirm_fields(session: requests.Session, base_url: str, name: str, target: str) -> dict:
    page = session.get(f"{base_url}/actions/{name}/{target}", timeout=10)
    assert page.status_code == 200, page.text[:500]
    return hidden_fields(page.text)


class HeadLock:
    """Hold the audit chain head (as the owner) so an append waits right before its commit.

    Every action appends its audit entry last, just before the commit: with the
    head held, a process that already has Stripe's answer stops exactly in the
    window between Stripe's success and our commit.
    """

    def __init__(self, owner_url: str) -> None:
        self.conn = psycopg.connect(libpq(owner_url))

    def __enter__(self) -> HeadLock:
        self.conn.execute("SELECT * FROM audit_chain_head WHERE id = 1 FOR UPDATE")
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.rollback()
        self.conn.close()


def wait_for(predicate: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def waiting_on_a_lock(superuser_url: str, role: str) -> bool:
    """Whether a backend of `role` is blocked on a lock right now."""
    with psycopg.connect(libpq(superuser_url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s "
            "AND wait_event_type = 'Lock' AND datname = current_database()",
            (role,),
        ).fetchone()
        return bool(row and row[0])
