"""Step-up re-authentication: the same person, freshly, or nothing changes."""

from __future__ import annotations

from sqlalchemy import select

from console import db
from console.audit.models import AuditEntry
from console.security.models import LoginSession, User
from tests.conftest import query_of


def entries(app, action: str) -> list[AuditEntry]:
    with app.app_context():
        return list(
            db.session().scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
            )
        )


def signed_in_as(client) -> str:
    html = client.get("/").get_data(as_text=True)
    return html


def open_sessions(app) -> list[tuple[str, str | None]]:
    with app.app_context():
        rows = db.session().execute(
            select(User.email, LoginSession.end_reason)
            .join(User, User.id == LoginSession.user_id)
            .where(LoginSession.ended_at.is_(None))
        )
        return [(email, reason) for email, reason in rows]


def test_step_up_asks_for_a_fresh_login(auth):
    """Figure: the step-up authorization request carries max_age=0 and prompt=login."""
    auth.as_role("admin")
    q = query_of(auth.start("admin", step_up=True))
    assert q["max_age"] == ["0"] and q["prompt"] == ["login"]


def test_step_up_as_a_different_person_is_refused_and_session_stays(app, auth, client, idp):
    """Figure: step-up as admin2 inside admin's session: 403, 1 audited failure, still admin."""
    auth.as_role("admin")
    resp = auth.login("admin2", step_up=True, next_url="/ops/jobs")
    assert resp.status_code == 403
    html = resp.get_data(as_text=True)
    assert "admin2@example.test" in html and "still signed in as yourself" in html
    assert open_sessions(app) == [("admin@example.test", None)]
    assert "admin@example.test" in signed_in_as(client)
    assert "admin2@example.test" not in signed_in_as(client)
    [failed] = entries(app, "auth:step_up:failed")
    assert failed.actor_email == "admin@example.test"
    assert failed.details["extra"]["signed_in_email"] == "admin2@example.test"
    assert entries(app, "auth:step_up:success") == []
    with app.app_context():  # nothing about admin2 was written either
        assert db.session().scalar(select(User).where(User.sub == "sub-admin-2")) is None


def test_step_up_without_auth_time_is_refused(app, auth, client, idp):
    """Figure: an ID token without auth_time ends the step-up: 401 and 1 audited failure."""
    auth.as_role("admin")
    idp.set_fault("no_auth_time")
    resp = auth.login("admin", step_up=True)
    assert resp.status_code == 401
    assert "did not ask you to sign in again" in resp.get_data(as_text=True)
    [failed] = entries(app, "auth:step_up:failed")
    assert failed.details["extra"]["why"] == "the ID token has no auth_time"
    assert entries(app, "auth:step_up:success") == []


def test_step_up_with_auth_time_before_the_request_is_refused(app, auth, client, idp):
    """Figure: auth_time 60 s before the step-up request (inside 5 min) is refused."""
    auth.as_role("admin")
    idp.set_fault("early_auth_time")
    resp = auth.login("admin", step_up=True)
    assert resp.status_code == 401
    [failed] = entries(app, "auth:step_up:failed")
    assert "earlier than the re-authentication request" in failed.details["extra"]["why"]


def test_same_person_fresh_step_up_succeeds(app, auth, client):
    """Figure: the same sub with a fresh auth_time: 302 to next and 1 step-up success entry."""
    auth.as_role("admin")
    resp = auth.login("admin", step_up=True, next_url="/ops/jobs")
    assert resp.status_code == 302 and resp.headers["Location"] == "/ops/jobs"
    assert len(entries(app, "auth:step_up:success")) == 1
    assert open_sessions(app) == [("admin@example.test", None)]


def test_login_without_auth_time_does_not_count_as_recent(
    app, auth, client, idp, stripe, stripe_client
):
    """Figure: after a login whose token lacks auth_time, a refund still asks for step-up."""
    from tests.security.test_money_input import captured_order

    order = captured_order(app, stripe_client, 5000, "EUR")
    idp.set_fault("no_auth_time")
    assert auth.login("admin").status_code == 302
    html = client.get(f"/actions/orders:order:refund/{order.external_id}").get_data(as_text=True)
    assert "Sign in again at the identity provider" in html
