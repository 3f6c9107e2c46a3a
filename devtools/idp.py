"""Start the local OpenID Connect providers (Node) from Python.

`MockIdP` (tests): oauth2-mock-server with identities and faults set over a
loopback control API. `DemoIdP` (demo): npm `oidc-provider` with the demo
identities and their groups.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

NODE_DIR = Path(__file__).resolve().parent / "node"


class PeerError(RuntimeError):
    """A local peer did not start."""


def _drain(stream: Any, prefix: str) -> None:
    """Copy a peer's output to ours so its pipe never fills up and blocks it."""
    for line in stream:
        sys.stderr.write(f"{prefix}{line}")


def _spawn(
    script: str, args: list[str], timeout: float = 20.0, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], dict]:
    if not (NODE_DIR / "node_modules").is_dir():
        raise PeerError("npm peers are not installed: run `npm ci --prefix devtools/node`")
    node = shutil.which("node")
    if node is None:
        raise PeerError("node is not installed (Node 20 is needed for the local IdPs)")
    proc = subprocess.Popen(
        [node, str(NODE_DIR / script), *args],
        cwd=NODE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NODE_ENV": os.environ.get("NODE_ENV", "development"), **(env or {})},
    )
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if line.strip().startswith("{"):
                for stream in (proc.stdout, proc.stderr):
                    threading.Thread(
                        target=_drain, args=(stream, f"[{script}] "), daemon=True
                    ).start()
                return proc, json.loads(line)
        if proc.poll() is not None:
            break
    proc.kill()
    err = proc.stderr.read() if proc.stderr else ""
    raise PeerError(f"{script} did not start: {err.strip()[-2000:]}")


class MockIdP:
    """The test identity provider (oauth2-mock-server), one process per test session."""

    def __init__(self, proc: subprocess.Popen[str], issuer: str, port: int) -> None:
        self.proc = proc
        self.issuer = issuer
        self.port = port

    @classmethod
    def start(cls) -> MockIdP:
        proc, ready = _spawn("mock_idp.mjs", ["--port", "0"])
        return cls(proc, ready["issuer"], int(ready["port"]))

    def _control(self, path: str, body: dict[str, Any]) -> None:
        resp = requests.post(f"{self.issuer}/_control/{path}", json=body, timeout=5)
        resp.raise_for_status()

    def add_identity(self, login_hint: str, *, sub: str, email: str, groups: list[str]) -> None:
        claims = {
            "sub": sub,
            "email": email,
            "groups": groups,
            "name": email.split("@", maxsplit=1)[0],
        }
        self._control("identities", {"login_hint": login_hint, "claims": claims})

    def set_fault(self, mode: str) -> None:
        self._control("fault", {"mode": mode})

    def reset(self) -> None:
        self._control("reset", {})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def __enter__(self) -> MockIdP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class DemoIdP:
    """The demo identity provider (oidc-provider), kept running by bin/demo."""

    def __init__(self, proc: subprocess.Popen[str], issuer: str) -> None:
        self.proc = proc
        self.issuer = issuer

    @classmethod
    def start(
        cls,
        *,
        port: int,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        post_logout_redirect_uri: str | None = None,
    ) -> DemoIdP:
        args = [
            "--port",
            str(port),
            "--client-id",
            client_id,
            "--redirect-uri",
            redirect_uri,
        ]
        if post_logout_redirect_uri:
            args += ["--post-logout-redirect-uri", post_logout_redirect_uri]
        # The secret goes through the environment, not argv: `ps` shows argv to everyone.
        proc, ready = _spawn("demo_idp.mjs", args, env={"DEMO_IDP_CLIENT_SECRET": client_secret})
        return cls(proc, ready["issuer"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
