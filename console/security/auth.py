"""Single sign-on through OIDC (authorization code + PKCE S256), login and logout.

There are no local passwords and no way in that does not go through the
identity provider, in any mode.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.flask_client import OAuth
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import LoginManager, current_user, login_user, logout_user
from joserfc.errors import JoseError
from sqlalchemy import select
from werkzeug.wrappers import Response

from console import db
from console.audit.service import record, record_now
from console.db import utcnow
from console.security.models import User
from console.security.permissions import roles_from_groups
from console.security.users import CurrentUser, end_session, load_current_user, start_session

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
# auth_time is whole seconds from another machine's clock.
CLOCK_SKEW_SECONDS = 5
UNKNOWN_AUTH_TIME = datetime(1970, 1, 1, tzinfo=UTC)

DEMO_IDENTITIES = [
    ("support@example.test", "Support staff (ops-support)"),
    ("admin@example.test", "Admin (ops-admins)"),
    ("admin2@example.test", "Second admin, to approve four-eyes releases (ops-admins)"),
    ("auditor@example.test", "Audit reviewer (ops-audit)"),
    ("nogroup@example.test", "No console group: sees the 403 page"),
]


def init_auth(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to continue."
    login_manager.login_message_category = "info"
    login_manager.session_protection = None  # server-side sessions do this job
    oauth = OAuth(app)  # one per app: each app has its own IdP settings
    app.extensions["console_oauth"] = oauth
    if settings.oidc_issuer:
        oauth.register(
            "idp",
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret,
            server_metadata_url=f"{settings.oidc_issuer}/.well-known/openid-configuration",
            client_kwargs={
                "scope": "openid email profile groups",
                "code_challenge_method": "S256",
                "token_endpoint_auth_method": "client_secret_basic",
                "timeout": 10,
            },
        )
    app.register_blueprint(bp)


@login_manager.user_loader
def _load_user(token: str) -> CurrentUser | None:
    return load_current_user(db.session(), token)


@login_manager.unauthorized_handler
def _unauthorized() -> Response:
    expired = request.environ.get("console.session_expired")
    if expired == "idle":
        flash("You were signed out after a period of inactivity. Please sign in again.", "info")
    elif expired == "absolute":
        flash("Your session reached its maximum length. Please sign in again.", "info")
    if request.headers.get("HX-Request"):
        resp = Response("", status=401)
        resp.headers["HX-Redirect"] = url_for("auth.login", next=safe_next(request.full_path))
        return resp
    return redirect(url_for("auth.login", next=safe_next(request.full_path)))


def safe_next(target: str | None, default: str = "/") -> str:
    """Allow only local absolute paths (no scheme, no host, no `//`)."""
    if not target:
        return default
    target = target.strip()
    if target.endswith("?"):
        target = target[:-1]
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
    ):
        return default
    return target


def _idp() -> Any:
    client = current_app.extensions["console_oauth"].create_client("idp")
    if client is None:
        abort(503, "Single sign-on is not configured (OIDC_ISSUER is empty).")
    return client


def _error_page(title: str, message: str, status: int) -> tuple[str, int]:
    return render_template("auth/error.html", title=title, message=message), status


@bp.get("/login")
def login() -> Any:
    """Show the sign-in page, or start the SSO redirect when asked to."""
    next_url = safe_next(request.args.get("next"))
    if request.args.get("sso") is None:
        if current_user.is_authenticated and not request.args.get("step_up"):
            return redirect(next_url)
        settings = current_app.config["SETTINGS"]
        return render_template(
            "auth/login.html",
            next_url=next_url,
            demo_identities=DEMO_IDENTITIES if settings.env == "demo" else [],
            step_up=bool(request.args.get("step_up")),
        )
    session["login_next"] = next_url
    step_up = bool(request.args.get("step_up"))
    session["login_step_up"] = step_up
    if step_up:
        # The IdP's auth_time must be later than this moment (checked at the callback).
        session["step_up_requested_at"] = int(time.time())
    else:
        session.pop("step_up_requested_at", None)
    extra: dict[str, Any] = {}
    hint = request.args.get("login_hint", "").strip()
    if hint:
        extra["login_hint"] = hint[:320]
    if request.args.get("switch"):
        # "Sign in as someone else": the IdP must ask, even if it has a session.
        extra["prompt"] = "login"
    if step_up:
        # Step-up: ask the IdP for a fresh authentication and check auth_time.
        extra["max_age"] = 0
        extra["prompt"] = "login"
    try:
        return _idp().authorize_redirect(url_for("auth.callback", _external=True), **extra)
    except (requests.RequestException, AuthlibBaseError, ValueError) as exc:
        log.warning("identity provider unavailable: %s", exc)
        record_now(
            action="auth:login:failed",
            outcome="failed",
            details={"error": "identity provider unavailable", "detail": str(exc)[:300]},
        )
        return _error_page(
            "Sign-in is unavailable",
            "The identity provider did not answer. Try again in a minute; if it persists, "
            "check the IdP status page.",
            502,
        )


def _claims_from(token: dict[str, Any]) -> dict[str, Any]:
    claims: dict[str, Any] = dict(token.get("userinfo") or {})
    groups_claim = current_app.config["SETTINGS"].oidc_groups_claim
    if not claims.get("email") or groups_claim not in claims:
        # Some IdPs put only `sub` in the ID token: read the rest from userinfo.
        info = _idp().userinfo(token=token)
        if info.get("sub") != claims.get("sub"):
            raise JoseError("userinfo subject does not match the ID token")
        for key, value in info.items():
            claims.setdefault(key, value)
    return claims


@bp.get("/auth/callback")
def callback() -> Any:
    """Finish the authorization-code flow and sign the user in."""
    step_up = bool(session.pop("login_step_up", False))
    requested_at = session.pop("step_up_requested_at", None)
    next_url = safe_next(session.pop("login_next", None))
    if request.args.get("error"):
        error = request.args.get("error", "")[:100]
        record_now(action="auth:login:failed", outcome="failed", details={"error": error})
        message = (
            "Sign-in was cancelled or refused at the identity provider."
            if error == "access_denied"
            else f"The identity provider reported an error ({error})."
        )
        return _error_page("Sign-in did not complete", message, 401)
    try:
        token = _idp().authorize_access_token()
        claims = _claims_from(token)
    except requests.RequestException as exc:
        record_now(
            action="auth:login:failed",
            outcome="failed",
            details={"error": "identity provider unavailable", "detail": str(exc)[:300]},
        )
        return _error_page(
            "Sign-in is unavailable", "The identity provider did not answer. Try again.", 502
        )
    except (AuthlibBaseError, JoseError, KeyError, ValueError) as exc:
        record_now(
            action="auth:login:failed",
            outcome="failed",
            details={"error": type(exc).__name__, "detail": str(exc)[:300]},
        )
        return _error_page(
            "Sign-in could not be verified",
            "The answer from the identity provider did not check out (state, nonce, "
            "signature, audience or expiry). Nothing was signed in. Please start again.",
            400,
        )
    return _finish_login(claims, next_url, step_up, requested_at, token.get("id_token"))


def _finish_login(
    claims: dict[str, Any],
    next_url: str,
    step_up: bool,
    requested_at: int | None = None,
    id_token: str | None = None,
) -> Any:
    settings = current_app.config["SETTINGS"]
    sub = str(claims.get("sub") or "")
    if not sub:
        return _error_page("Sign-in could not be verified", "The ID token has no subject.", 400)
    raw_groups = claims.get(settings.oidc_groups_claim) or []
    if isinstance(raw_groups, str):
        raw_groups = [g for g in raw_groups.replace(",", " ").split() if g]
    groups = [str(g) for g in raw_groups]
    roles = roles_from_groups(groups, settings.role_map)
    email = str(claims.get("email") or "")
    auth_time = _auth_time(claims.get("auth_time"))
    actor = {"sub": sub, "email": email, "roles": roles}
    s = db.session()
    if step_up:
        refused = _check_step_up(sub, email, auth_time, requested_at, settings.step_up_seconds)
        if refused is not None:
            return refused
    if not roles:
        record_now(
            action="auth:login:denied",
            outcome="denied",
            actor=actor,
            details={"groups": groups, "why": "no group maps to a console role"},
        )
        return render_template("errors/no_role.html", email=email, groups=groups), 403
    if auth_time is None:
        # No auth_time: the IdP may have reused an old session, so this login does
        # not count as a recent authentication (a high-risk action asks for step-up).
        auth_time = UNKNOWN_AUTH_TIME
    user = s.execute(select(User).where(User.sub == sub)).scalar_one_or_none()
    if user is None:
        user = User(sub=sub)
        s.add(user)
    user.email = email
    user.name = str(claims.get("name") or email or sub)
    user.roles = roles
    user.groups = groups
    user.last_login_at = utcnow()
    s.flush()
    if current_user.is_authenticated:
        end_session(s, current_user.get_id(), "replaced")
    logout_user()
    session.clear()  # a new session id at every login: nothing carries over
    token, _record = start_session(s, user, auth_time)
    record(
        s,
        action="auth:step_up:success" if step_up else "auth:login:success",
        outcome="success",
        actor=actor,
        target_type="user",
        target_id=sub,
        details={"groups": groups},
    )
    s.commit()
    login_user(load_current_user(s, token))
    session.permanent = True
    if isinstance(id_token, str) and len(id_token) < 3000:
        session["id_token"] = id_token  # the hint for RP-initiated logout
    if step_up:
        flash("Re-authenticated. You can now complete the high-risk action.", "success")
    return redirect(next_url)


def _fresh(auth_time: datetime, within_seconds: int) -> bool:
    return (utcnow() - auth_time).total_seconds() <= within_seconds


def _auth_time(raw: Any) -> datetime | None:
    """The ID token's auth_time as a UTC time; None when absent or not a Unix time."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    try:
        return datetime.fromtimestamp(int(raw), UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _check_step_up(
    sub: str,
    email: str,
    auth_time: datetime | None,
    requested_at: int | None,
    within_seconds: int,
) -> Any:
    """Refuse a step-up that is not the same person, freshly; None when it is.

    The session is left as it was: the person stays signed in as themselves,
    and the refusal is audited against them.
    """
    original = current_user.actor() if current_user.is_authenticated else None
    if original is not None and original["sub"] != sub:
        record_now(
            action="auth:step_up:failed",
            outcome="failed",
            actor=original,
            target_type="user",
            target_id=original["sub"],
            details={
                "why": "a different identity signed in at the identity provider",
                "signed_in_sub": sub,
                "signed_in_email": email,
            },
        )
        return _error_page(
            "Re-authentication was for someone else",
            f"The identity provider signed in {email or sub}, but this console session "
            f"belongs to {original['email'] or original['sub']}. The re-authentication was "
            "ended and nothing changed: you are still signed in as yourself. To act as "
            "another person, sign out first.",
            403,
        )
    why = None
    if auth_time is None:
        why = "the ID token has no auth_time"
    elif requested_at is None or auth_time.timestamp() < requested_at - CLOCK_SKEW_SECONDS:
        why = "auth_time is earlier than the re-authentication request"
    elif not _fresh(auth_time, within_seconds):
        why = "auth_time is not recent"
    if why is None:
        return None
    record_now(
        action="auth:step_up:failed",
        outcome="failed",
        actor=original or {"sub": sub, "email": email, "roles": []},
        target_type="user",
        target_id=sub,
        details={
            "why": why,
            "auth_time": auth_time.isoformat() if auth_time else None,
            "requested_at": requested_at,
        },
    )
    return _error_page(
        "Re-authentication did not happen",
        "The identity provider did not ask you to sign in again, so this high-risk "
        "action cannot go ahead. Try again; if it repeats, contact IT.",
        401,
    )


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> Any:
    """GET asks for confirmation; POST (CSRF-checked) ends the session server-side."""
    if request.method == "GET":
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login"))
        return render_template("auth/logout.html")
    id_token = session.get("id_token")
    if current_user.is_authenticated:
        s = db.session()
        actor = current_user.actor()
        end_session(s, current_user.get_id(), "logout")
        record(s, action="auth:logout", outcome="success", actor=actor)
        s.commit()
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    end_url = _end_session_url(id_token)
    if end_url:
        # RP-initiated logout: end the IdP's session too, so the next sign-in asks.
        return redirect(end_url, code=303)
    return redirect(url_for("auth.login"))


def _end_session_url(id_token: str | None) -> str | None:
    """The IdP's end_session_endpoint with id_token_hint, or None when it has none."""
    if current_app.extensions["console_oauth"].create_client("idp") is None:
        return None
    try:
        metadata = _idp().load_server_metadata()
    except (requests.RequestException, AuthlibBaseError, ValueError) as exc:
        log.warning("identity provider metadata unavailable at logout: %s", exc)
        return None
    endpoint = metadata.get("end_session_endpoint")
    if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
        return None
    params = {
        "client_id": current_app.config["SETTINGS"].oidc_client_id,
        "post_logout_redirect_uri": url_for("auth.login", _external=True),
    }
    if id_token:
        params["id_token_hint"] = id_token
    separator = "&" if "?" in endpoint else "?"
    return f"{endpoint}{separator}{urlencode(params)}"
