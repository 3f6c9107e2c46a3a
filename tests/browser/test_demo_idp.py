"""Sign in through npm oidc-provider: a stricter IdP (PKCE enforced, claims via userinfo)."""

from __future__ import annotations

import pytest

from console import create_app
from devtools.idp import DemoIdP
from tests.conftest import LiveServer, app_config, free_port

pytestmark = pytest.mark.browser


def test_login_through_oidc_provider(browser, pg_url, idp, stripe_double):
    idp_port = free_port()
    app_port = free_port()
    demo = DemoIdP.start(
        port=idp_port,
        client_id="console-test-strict",
        client_secret="strict-secret-0123456789",
        redirect_uri=f"http://127.0.0.1:{app_port}/auth/callback",
    )
    try:
        app = create_app(
            app_config(
                pg_url,
                idp,
                stripe_double,
                OIDC_ISSUER=demo.issuer,
                OIDC_CLIENT_ID="console-test-strict",
                OIDC_CLIENT_SECRET="strict-secret-0123456789",
            )
        )
        server = LiveServer(app)
        server.port, server.url = app_port, f"http://127.0.0.1:{app_port}"
        from werkzeug.serving import make_server

        server.server = make_server("127.0.0.1", app_port, app, threaded=True)
        import threading

        server.thread = threading.Thread(target=server.server.serve_forever, daemon=True)
        with server:
            page = browser.new_page()
            page.goto(f"{server.url}/login")
            page.get_by_role("link", name="Sign in with single sign-on").click()
            page.fill("input[name=login]", "auditor@example.test")
            page.fill("input[name=password]", "anything")
            page.click("button[type=submit]")
            if "/interaction/" in page.url:  # the consent step
                page.click("button[type=submit]")
            page.wait_for_url(f"{server.url}/**")
            assert "auditor@example.test" in page.locator(".who").inner_text()
            assert "auditor" in page.locator(".who .roles").inner_text()
            page.close()
    finally:
        demo.stop()
