"""RP-initiated logout: signing out of the console ends the IdP session too."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, urlsplit


def jwt_claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_logout_sends_the_browser_to_the_idps_end_session_endpoint(app, auth, client, idp):
    """Figure: POST /logout answers 303 to end_session_endpoint with this user's id_token_hint."""
    auth.as_role("support")
    resp = auth.logout()
    assert resp.status_code == 303
    target = urlsplit(resp.headers["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{idp.issuer}/endsession"
    q = parse_qs(target.query)
    assert q["post_logout_redirect_uri"] == ["http://localhost/login"]
    assert q["client_id"] == ["console-test"]
    claims = jwt_claims(q["id_token_hint"][0])
    assert claims["sub"] == "sub-support-1" and claims["iss"] == idp.issuer
    assert client.get("/").status_code == 302  # the console session is over already


def test_sign_in_as_someone_else_forces_the_idp_login_prompt(auth, client):
    """Figure: the login page's switch link asks the IdP for prompt=login."""
    html = client.get("/login").get_data(as_text=True)
    assert "Sign in as someone else" in html
    resp = client.get("/login?sso=1&switch=1&login_hint=admin")
    q = parse_qs(urlsplit(resp.headers["Location"]).query)
    assert q["prompt"] == ["login"] and q["login_hint"] == ["admin"]
