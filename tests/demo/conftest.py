"""Walk-throughs against the demo, started the README's way.

One demo for the whole session: a fresh copy of the repository (the files git
lists, uncommitted work included, so a walk tests what is on disk), its
`.venv` and npm peers linked to this checkout's (bin/setup finds them up to
date), then `bin/demo` on free ports with its own embedded PostgreSQL under
the copy's `instance/`. Every walk signs in through the demo IdP's own login
page, in a fresh browser context per identity.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.browser.conftest import AXE, describe
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "demo"
VIEWPORT = {"width": 1280, "height": 800}
MAX_PAGE_LOADS = 3
DEMO_ORDERS = 300
# A high-risk action wants a sign-in at most this old (production: 300 s). Short, so a
# walk meets the step-up without waiting five minutes; long enough to confirm after it.
STEP_UP_SECONDS = 15
# Settings of the calling shell that would point the demo elsewhere.
FOREIGN_ENV = (
    "DATABASE_URL",
    "DATABASE_MIGRATION_URL",
    "STRIPE_API_KEY",
    "STRIPE_API_BASE",
    "SUPPLIER_API_BASE",
    "JOB_SCHEDULES",
    "SECRET_KEY",
    "SHOP_DATABASE_URL",
    "OIDC_ISSUER",
    "ROLE_MAP",
    "CONSOLE_ENV",
)


def fresh_copy(dest: Path) -> None:
    """The repository as a clone would have it, plus uncommitted work; a new git repo."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    linked = {".venv", "devtools/node/node_modules"}
    for rel in filter(None, listed.split("\0")):
        if rel in linked or rel.startswith(("instance/", "test-artifacts/")):
            continue
        src = ROOT / rel
        if not src.is_file() and not src.is_symlink():
            continue  # deleted in the work tree but still in the index
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)
    (dest / ".venv").symlink_to((ROOT / ".venv").resolve())
    (dest / "devtools/node/node_modules").symlink_to(
        (ROOT / "devtools/node/node_modules").resolve()
    )
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)


class Demo:
    def __init__(self, url: str, proc: subprocess.Popen[bytes] | None, log: Path) -> None:
        self.url = url.rstrip("/")
        self.proc = proc
        self.log = log


def _wait_for_url(proc: subprocess.Popen[bytes], log: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"Payments console: (http://\S+)", log.read_text(errors="replace"))
        if found:
            return found.group(1)
        if proc.poll() is not None:
            raise RuntimeError(f"bin/demo exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        time.sleep(0.3)
    raise RuntimeError(
        f"bin/demo printed no console URL in {timeout} s:\n{log.read_text()[-4000:]}"
    )


@pytest.fixture(scope="session")
def demo() -> Iterator[Demo]:
    running = os.environ.get("WALK_DEMO_URL")
    if running:  # a demo you started yourself (while writing a walk); it is not stopped
        yield Demo(running, None, ARTIFACTS / "demo.log")
        return
    tmp = Path(tempfile.mkdtemp(prefix="console-demo-"))
    copy = tmp / "console"
    copy.mkdir()
    fresh_copy(copy)
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    env["STEP_UP_SECONDS"] = str(STEP_UP_SECONDS)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = ARTIFACTS / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                "bin/demo",
                "--port",
                str(free_port()),
                "--idp-port",
                str(free_port()),
                "--stripe-port",
                str(free_port()),
                "--orders",
                str(DEMO_ORDERS),
            ],
            cwd=copy,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = _wait_for_url(proc, log, timeout=240)
        for _ in range(100):
            try:
                if requests.get(f"{url}login", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        yield Demo(url, proc, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # bin/demo stops everything, PostgreSQL too
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def demo_browser(browser: Any) -> Any:
    """The session's one Chromium (tests/conftest.py): Playwright's sync API allows one."""
    return browser


IDENTITY = {
    "support": "support@example.test",
    "admin": "admin@example.test",
    "admin2": "admin2@example.test",
    "auditor": "auditor@example.test",
}


class Walk:
    """One person's walk: page loads counted, a screenshot and an axe check per step."""

    def __init__(self, demo: Demo, browser: Any, name: str, who: str) -> None:
        self.demo = demo
        self.name = name
        self.who = IDENTITY[who]
        self.dir = ARTIFACTS / name
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.steps = 0
        self.loads: list[str] = []
        self.counting = False
        # bypass_csp only so axe-core can be injected.
        self.context = browser.new_context(viewport=VIEWPORT, bypass_csp=True)
        self.page = self.context.new_page()
        self.page.set_default_timeout(20000)
        self.errors: list[str] = []
        self.page.on("load", self._loaded)
        self.page.on("response", self._response)
        self.sign_in()

    # -- bookkeeping

    def _loaded(self, page: Any) -> None:
        if self.counting and page.url.startswith(self.demo.url):
            self.loads.append(page.url)

    def _response(self, response: Any) -> None:
        if response.url.startswith(self.demo.url) and response.status >= 500:
            self.errors.append(f"{response.status} {response.request.method} {response.url}")

    def sign_in(self) -> None:
        """Through the demo IdP's own login page, as a person would; lands on `/`."""
        p = self.page
        p.goto(f"{self.demo.url}/")
        p.get_by_role("link", name="Sign in with single sign-on").click()
        self.idp_login()
        p.wait_for_url(f"{self.demo.url}/")
        assert self.who in p.locator(".who").inner_text()
        self.signed_in_at = time.monotonic()
        self.loads = [p.url]  # the walk starts here, at the dashboard
        self.counting = True

    def idp_login(self) -> None:
        p = self.page
        p.wait_for_selector("input[name=login]")
        p.fill("input[name=login]", self.who)
        p.fill("input[name=password]", "any password")
        p.click("button[type=submit]")
        p.wait_for_load_state()
        if "/interaction/" in p.url and p.locator("button[type=submit]").count():
            p.click("button[type=submit]")  # the consent step
        p.wait_for_url(f"{self.demo.url}/**")

    def wait_for_step_up_window(self) -> None:
        """Let the sign-in age past the step-up window, as it would over a working day."""
        left = self.signed_in_at + STEP_UP_SECONDS + 1 - time.monotonic()
        if left > 0:
            time.sleep(left)

    def step_up(self, dialog: Any) -> Any:
        """Follow the confirm step's re-authentication link; returns the full-page confirm form."""
        assert "high-risk" in dialog.inner_text()
        dialog.get_by_role("link", name="Sign in again at the identity provider").click()
        self.idp_login()  # the IdP asks for the password again (prompt=login, max_age=0)
        panel = self.page.locator("#confirm-panel")
        panel.locator("form").wait_for()
        return panel

    def stop_counting(self) -> None:
        """The fix is done: what follows is checking, not part of the fix's page budget."""
        assert len(self.loads) <= MAX_PAGE_LOADS, (
            f"{self.name}: {len(self.loads)} page loads for one fix: {self.loads}"
        )
        self.counting = False

    def step(self, label: str, *, axe: bool = True) -> None:
        """A screenshot of this step and no serious or critical accessibility violation."""
        self.steps += 1
        self.page.wait_for_load_state()
        slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
        self.page.screenshot(path=str(self.dir / f"{self.steps:02d}-{slug}.png"), full_page=True)
        assert not self.errors, f"server errors: {self.errors}"
        if axe:
            self.page.add_script_tag(path=str(AXE))
            result = self.page.evaluate(
                "async () => await axe.run(document, {resultTypes: ['violations']})"
            )
            bad = [v for v in result["violations"] if v.get("impact") in ("serious", "critical")]
            assert not bad, f"{self.name} / {label}: {describe(bad)}"

    # -- what people do

    def card_count(self, label: str) -> int:
        card = self.page.locator("a.card", has=self.page.locator(".label", has_text=label))
        return int(card.locator(".count").inner_text())

    def card_sub(self, label: str) -> str:
        card = self.page.locator("a.card", has=self.page.locator(".label", has_text=label))
        return card.locator(".sub").inner_text()

    def follow_card(self, label: str) -> None:
        self.page.locator("a.card", has=self.page.locator(".label", has_text=label)).click()
        self.page.wait_for_load_state()

    def dashboard_count(self, label: str) -> int:
        self.page.goto(f"{self.demo.url}/")
        return self.card_count(label)

    def open_action(self, scope: Any, label: str) -> Any:
        """Click an action button; the confirm step opens in the dialog. Returns it."""
        scope.get_by_role("link", name=label, exact=True).click()
        dialog = self.page.locator("#action-dialog")
        dialog.locator("form").wait_for()
        return dialog

    def confirm(self, dialog: Any, reason: str, ticket: str = "", **fields: str) -> None:
        for name, value in fields.items():
            dialog.locator(f"[name={name}]").fill(value)
        dialog.locator("textarea[name=reason]").fill(reason)
        if ticket:
            dialog.locator("input[name=ticket]").fill(ticket)
        dialog.locator(".form-actions button[type=submit]").click()

    def flash(self) -> str:
        """The success message the action answered with (out-of-band flash)."""
        flash = self.page.locator("#flash p.flash").last
        flash.wait_for()
        return flash.inner_text()

    def history_row(self, action: str) -> Any:
        """The newest row of this record's history panel for an action."""
        panel = self.page.locator("section[aria-labelledby=history-title]")
        row = panel.locator("tbody tr", has=self.page.locator("code", has_text=action)).first
        row.wait_for()
        return row

    def assert_history(self, action: str, reason: str, *changes: str) -> str:
        row = self.history_row(action)
        text = row.inner_text()
        assert self.who in text, text
        assert reason in text, text
        for change in changes:
            assert change in text, f"{change!r} not in the history row: {text!r}"
        return text

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def walk(demo: Demo, demo_browser: Any, request: Any) -> Iterator[Any]:
    """walk(who, name=test name) -> Walk; every walk's context closed at the end."""
    opened: list[Walk] = []

    def start(who: str, name: str | None = None) -> Walk:
        w = Walk(demo, demo_browser, name or request.node.name.removeprefix("test_"), who)
        opened.append(w)
        return w

    yield start
    for w in opened:
        w.close()
