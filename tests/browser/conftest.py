"""Playwright driving Debian Chromium; axe-core from the pinned npm peers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CHROMIUM_ARGS  # noqa: F401  (browser tests and tests/demo import it here)

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "devtools" / "node" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # bypass_csp only so axe-core can be injected; `strict_page` keeps the CSP.
    context = browser.new_context(viewport={"width": 1366, "height": 900}, bypass_csp=True)
    pg = context.new_page()
    pg.set_default_timeout(15000)
    yield pg
    context.close()


@pytest.fixture
def strict_page(browser: Any) -> Iterator[Any]:
    """A page that honours the console's CSP and records every console error."""
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(15000)
    pg.console_errors = []
    pg.on("console", lambda m: m.type == "error" and pg.console_errors.append(m.text))
    pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))
    yield pg
    context.close()


def login(page: Any, live_server: Any, hint: str, next_url: str = "/") -> None:
    """Sign in through the mock IdP, as a person clicking through would."""
    page.goto(f"{live_server.url}/login?next={next_url}")
    page.goto(f"{live_server.url}/login?sso=1&login_hint={hint}&next={next_url}")
    page.wait_for_url(f"{live_server.url}{next_url}*")


def axe_violations(page: Any, impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict]:
    """Run axe-core on the page; return the violations at the given impacts."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [v for v in result["violations"] if v.get("impact") in impacts]


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def describe(violations: list[dict]) -> str:
    return json.dumps(
        [
            {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"][:3]]}
            for v in violations
        ],
        indent=1,
    )
