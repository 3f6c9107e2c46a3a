"""SSO login through the real OIDC flow, roles from groups, sessions that really end."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from console import db
from console.audit.models import AuditEntry
from console.db import utcnow
from console.security.models import LoginSession, User


def audit_actions(app) -> list[tuple[str, str]]:
    with app.app_context():
        return [
            (e.action, e.outcome)
            for e in db.session().scalars(select(AuditEntry).order_by(AuditEntry.seq))
        ]


def test_anonymous_is_sent_to_login_with_next(client):
    resp = client.get("/orders/stuck?reason=amount_mismatch")
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith("/login?next=")
    assert "amount_mismatch" in resp.headers["Location"]


def test_login_page_offers_sso_and_no_password(client):
    html = client.get("/login").get_data(as_text=True)
    assert "Sign in with single sign-on" in html
    assert 'type="password"' not in html


def test_authorization_request_uses_pkce_state_and_nonce(auth):
    url = auth.start("support")
    from tests.conftest import query_of

    q = query_of(url)
    assert q["response_type"] == ["code"]
    assert q["code_challenge_method"] == ["S256"]
    assert len(q["code_challenge"][0]) >= 43
    assert q["state"][0] and q["nonce"][0]
    assert q["login_hint"] == ["support"]
    assert "openid" in q["scope"][0].split()


@pytest.mark.parametrize(
    ("hint", "roles"), [("support", ["support"]), ("admin", ["admin"]), ("auditor", ["auditor"])]
)
def test_login_maps_groups_to_roles_and_audits(app, auth, client, hint, roles):
    resp = auth.login(hint, next_url="/ops/jobs")
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/ops/jobs"
    page = client.get("/")
    assert page.status_code == 200
    assert ", ".join(roles) in page.get_data(as_text=True)
    with app.app_context():
        user = db.session().scalar(select(User).where(User.email == f"{hint}@example.test"))
        assert user is not None and user.roles == roles
    assert ("auth:login:success", "success") in audit_actions(app)


def test_user_without_mapped_group_gets_clear_403_and_is_not_logged_in(app, auth, client):
    resp = auth.login("nogroup")
    assert resp.status_code == 403
    html = resp.get_data(as_text=True)
    assert "no role in this console" in html
    assert "marketing" in html
    assert client.get("/").status_code == 302  # still anonymous
    assert ("auth:login:denied", "denied") in audit_actions(app)


def test_roles_are_reread_at_every_login(app, auth, client, idp):
    idp.add_identity("flipper", sub="sub-flip", email="flip@example.test", groups=["ops-support"])
    auth.as_role("flipper")
    auth.logout()
    idp.add_identity("flipper", sub="sub-flip", email="flip@example.test", groups=["ops-admins"])
    auth.as_role("flipper")
    with app.app_context():
        user = db.session().scalar(select(User).where(User.sub == "sub-flip"))
        assert user.roles == ["admin"]


def test_next_only_to_local_paths(auth):
    for evil in (
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "javascript:alert(1)",
    ):
        resp = auth.login("support", next_url=evil)
        assert resp.status_code == 302
        assert resp.headers["Location"] == "/", evil


def test_logout_ends_session_server_side_and_old_cookie_is_dead(app, auth, client):
    auth.as_role("support")
    cookie = client.get_cookie("console_session")
    assert cookie is not None
    old_value = cookie.value
    assert auth.logout().status_code == 303  # on to the IdP's end_session_endpoint
    assert client.get("/").status_code == 302
    # Replaying the cookie captured before logout does not bring the session back.
    client.set_cookie("console_session", old_value)
    assert client.get("/").status_code == 302
    assert ("auth:logout", "success") in audit_actions(app)


def test_the_cookie_is_set_at_sign_in_and_not_resent_on_every_page(app, auth, client):
    """Set once, expiring with the sign-in's absolute limit; an unchanged cookie is not
    re-signed per response (idle expiry is the server-side session's)."""
    auth.as_role("support")
    cookie = client.get_cookie("console_session")
    assert cookie is not None and cookie.expires is not None
    hours = app.config["SETTINGS"].session_absolute_hours
    lifetime = (cookie.expires - utcnow()).total_seconds()
    assert hours * 3600 - 60 < lifetime <= hours * 3600
    client.get("/")  # shows (and so removes from the session) the sign-in's flash
    cookie = client.get_cookie("console_session")
    for path in ("/", "/orders/stuck", "/webhooks"):
        resp = client.get(path)
        assert resp.status_code == 200
        sent = [c for c in resp.headers.getlist("Set-Cookie") if c.startswith("console_session=")]
        assert not sent, path
    assert client.get_cookie("console_session").value == cookie.value


def test_new_session_id_at_login(app, auth, client):
    client.get("/login")
    auth.as_role("support")
    first = client.get_cookie("console_session").value
    auth.as_role("admin")
    second = client.get_cookie("console_session").value
    assert first != second
    with app.app_context():
        sessions = db.session().scalars(select(LoginSession).order_by(LoginSession.id)).all()
        assert sessions[0].ended_at is not None and sessions[0].end_reason == "replaced"
        assert sessions[-1].ended_at is None


def test_idle_timeout_ends_session(app, auth, client):
    auth.as_role("support")
    with app.app_context():
        s = db.session()
        record = s.scalars(select(LoginSession)).one()
        record.last_seen_at = utcnow() - timedelta(minutes=16)
        s.commit()
    resp = client.get("/")
    assert resp.status_code == 302
    assert "/login" in resp.headers["Location"]
    follow = client.get(resp.headers["Location"])
    assert "inactivity" in follow.get_data(as_text=True)


def test_absolute_timeout_ends_session(app, auth, client):
    auth.as_role("support")
    with app.app_context():
        s = db.session()
        record = s.scalars(select(LoginSession)).one()
        record.created_at = utcnow() - timedelta(hours=13)
        s.commit()
    assert client.get("/").status_code == 302


@pytest.mark.parametrize(
    ("fault", "status", "text"),
    [
        ("deny", 401, "cancelled or refused"),
        ("wrong_nonce", 400, "did not check out"),
        ("wrong_audience", 400, "did not check out"),
        ("expired", 400, "did not check out"),
        ("bad_signature", 400, "did not check out"),
    ],
)
def test_idp_errors_give_friendly_page_and_no_login(app, auth, client, idp, fault, status, text):
    idp.set_fault(fault)
    resp = auth.login("support")
    assert resp.status_code == status
    assert text in resp.get_data(as_text=True)
    assert "Traceback" not in resp.get_data(as_text=True)
    assert client.get("/").status_code == 302
    assert ("auth:login:failed", "failed") in audit_actions(app)


def test_tampered_state_is_refused(app, auth, client):
    callback = auth.authorize(auth.start("support"))
    tampered = callback.replace("state=", "state=x")
    resp = client.get(tampered)
    assert resp.status_code == 400
    assert client.get("/").status_code == 302


def test_code_replay_is_refused(app, auth, client):
    callback = auth.authorize(auth.start("support"))
    assert client.get(callback).status_code == 302
    auth.logout()
    resp = client.get(callback)  # same code and state again
    assert resp.status_code == 400
    assert client.get("/").status_code == 302


def test_claims_from_userinfo_when_id_token_has_only_sub(app, auth, client, idp):
    idp.set_fault("claims_in_userinfo_only")
    resp = auth.login("admin")
    assert resp.status_code == 302
    assert "admin" in client.get("/").get_data(as_text=True)


def test_idp_down_gives_friendly_page(pg_url, idp, stripe_double):
    from console import create_app
    from tests.conftest import app_config, free_port

    app = create_app(
        app_config(pg_url, idp, stripe_double, OIDC_ISSUER=f"http://127.0.0.1:{free_port()}")
    )
    resp = app.test_client().get("/login?sso=1")
    assert resp.status_code == 502
    assert "did not answer" in resp.get_data(as_text=True)


def test_step_up_sets_fresh_auth_time(app, auth, client, idp):
    auth.as_role("admin")
    resp = auth.login("admin", step_up=True, next_url="/ops/jobs")
    assert resp.status_code == 302
    idp.set_fault("stale_auth_time")
    resp = auth.login("admin", step_up=True)
    assert resp.status_code == 401
    assert "did not ask you to sign in again" in resp.get_data(as_text=True)
