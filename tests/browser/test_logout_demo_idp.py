"""Sign out at the demo IdP too, then pick another demo identity (issue 16's walk)."""

from __future__ import annotations

import threading

import pytest
from werkzeug.serving import make_server

from console import create_app
from devtools.idp import DemoIdP
from tests.browser.conftest import screenshot
from tests.conftest import LiveServer, app_config, free_port

pytestmark = pytest.mark.browser


def sign_in_at_demo_idp(page, console_url: str, login: str) -> None:
    page.goto(f"{console_url}/login")
    page.get_by_role("link", name=login).click()
    page.wait_for_selector("input[name=login]")
    assert page.input_value("input[name=login]") == login  # the link filled it in
    page.fill("input[name=password]", "anything")
    page.click("button[type=submit]")
    if "/interaction/" in page.url:  # the consent step
        page.click("button[type=submit]")
    page.wait_for_url(f"{console_url}/**")


def test_sign_out_ends_the_idp_session_and_the_next_identity_is_asked_for(
    browser, pg_url, idp, stripe_double
):
    """Figure: after sign-out, the next demo identity link signs in that identity (not the last)."""
    idp_port, app_port = free_port(), free_port()
    console_url = f"http://127.0.0.1:{app_port}"
    demo = DemoIdP.start(
        port=idp_port,
        client_id="console-test-logout",
        client_secret="logout-secret-0123456789",
        redirect_uri=f"{console_url}/auth/callback",
        post_logout_redirect_uri=f"{console_url}/login",
    )
    try:
        app = create_app(
            app_config(
                pg_url,
                idp,
                stripe_double,
                CONSOLE_ENV="demo",
                OIDC_ISSUER=demo.issuer,
                OIDC_CLIENT_ID="console-test-logout",
                OIDC_CLIENT_SECRET="logout-secret-0123456789",
            )
        )
        server = LiveServer(app)
        server.port, server.url = app_port, console_url
        server.server = make_server("127.0.0.1", app_port, app, threaded=True)
        server.thread = threading.Thread(target=server.server.serve_forever, daemon=True)
        with server:
            context = browser.new_context(viewport={"width": 1366, "height": 900})
            page = context.new_page()
            page.set_default_timeout(15000)
            sign_in_at_demo_idp(page, console_url, "auditor@example.test")
            assert "auditor@example.test" in page.locator(".who").inner_text()
            page.goto(f"{console_url}/logout")
            page.get_by_role("button", name="Sign out now").click()
            # The IdP asks to confirm ending its own session.
            page.wait_for_url(f"{demo.issuer}/**", wait_until="domcontentloaded")
            screenshot(page, "logout-idp-confirm")
            page.get_by_role("button", name="Yes, sign me out").click()
            page.wait_for_url(f"{console_url}/login*")
            assert "You are signed out." in page.content()
            sign_in_at_demo_idp(page, console_url, "support@example.test")
            who = page.locator(".who").inner_text()
            assert "support@example.test" in who and "auditor" not in who
            screenshot(page, "logout-next-identity")
            context.close()
    finally:
        demo.stop()
