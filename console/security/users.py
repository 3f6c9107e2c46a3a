"""The signed-in user as the request sees it, and server-side sessions."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from flask import current_app, request
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from console.db import utcnow
from console.security.models import LoginSession, User
from console.security.permissions import Permission, permissions_for


@cache
def _permissions_of(roles: tuple[str, ...]) -> frozenset[Permission]:
    return permissions_for(roles)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class CurrentUser:
    """What flask-login holds: the user, its roles and its login session."""

    user_id: int
    sub: str
    email: str
    name: str
    roles: list[str]
    session_token: str
    session_id: int
    auth_time: datetime

    # flask-login protocol
    is_authenticated: bool = True
    is_active: bool = True
    is_anonymous: bool = False

    def get_id(self) -> str:
        # The id flask-login keeps in the cookie is the server-side session
        # token, so ending the session server-side ends the cookie too.
        return self.session_token

    @property
    def permissions(self) -> frozenset[Permission]:
        # Asked per button per row on a list page: the union is computed once per set of roles.
        return _permissions_of(tuple(self.roles))

    def can(self, permission: Permission | str) -> bool:
        return Permission(permission) in self.permissions

    def actor(self) -> dict[str, Any]:
        return {"sub": self.sub, "email": self.email, "roles": list(self.roles)}

    def recently_authenticated(self, within_seconds: int) -> bool:
        return utcnow() - self.auth_time <= timedelta(seconds=within_seconds)


def start_session(s: Session, user: User, auth_time: datetime) -> tuple[str, LoginSession]:
    """Create a server-side session record; return its token (for the cookie)."""
    token = secrets.token_urlsafe(32)
    record = LoginSession(
        token_hash=hash_token(token),
        user_id=user.id,
        auth_time=auth_time,
        ip=request.remote_addr if request else None,
        user_agent=(request.user_agent.string[:500] if request else None),
    )
    s.add(record)
    s.flush()
    return token, record


def load_current_user(s: Session, token: str) -> CurrentUser | None:
    """Resolve a cookie's session token; end the session if it expired."""
    # The session and its user in one statement: this runs before every page.
    record = s.execute(
        select(LoginSession)
        .where(LoginSession.token_hash == hash_token(token))
        .options(joinedload(LoginSession.user))
    ).scalar_one_or_none()
    if record is None or record.ended_at is not None:
        return None
    now = utcnow()
    idle = timedelta(minutes=current_app.config["SETTINGS"].session_idle_minutes)
    absolute = timedelta(hours=current_app.config["SETTINGS"].session_absolute_hours)
    expired = None
    if now - record.last_seen_at > idle:
        expired = "idle"
    elif now - record.created_at > absolute:
        expired = "absolute"
    if expired:
        record.ended_at = now
        record.end_reason = expired
        s.commit()
        request.environ["console.session_expired"] = expired
        return None
    if now - record.last_seen_at > timedelta(seconds=30):
        record.last_seen_at = now
        s.commit()
    user = record.user
    return CurrentUser(
        user_id=user.id,
        sub=user.sub,
        email=user.email,
        name=user.name,
        roles=list(user.roles),
        session_token=token,
        session_id=record.id,
        auth_time=record.auth_time,
    )


def end_session(s: Session, token: str, reason: str) -> None:
    record = s.execute(
        select(LoginSession).where(LoginSession.token_hash == hash_token(token))
    ).scalar_one_or_none()
    if record is not None and record.ended_at is None:
        record.ended_at = utcnow()
        record.end_reason = reason
