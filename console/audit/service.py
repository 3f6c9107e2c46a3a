"""Record audit entries for the current request and user."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import g, has_request_context, request
from flask_login import current_user
from sqlalchemy.orm import Session

from console.audit.chain import append
from console.audit.models import AuditEntry
from console.db import separate_session

log = logging.getLogger(__name__)


def request_info() -> dict[str, Any]:
    """The request id, client IP (after ProxyFix) and user agent, if any."""
    if not has_request_context():
        return {}
    return {
        "id": g.get("request_id"),
        "ip": request.remote_addr,
        "user_agent": request.user_agent.string[:300] or None,
    }


def current_actor() -> dict[str, Any] | None:
    if has_request_context() and getattr(current_user, "is_authenticated", False):
        actor: dict[str, Any] = current_user.actor()
        return actor
    return None


def record(
    s: Session,
    *,
    action: str,
    outcome: str,
    actor: Mapping[str, Any] | None = None,
    **fields: Any,
) -> AuditEntry:
    """Append an entry in the caller's transaction (the caller commits)."""
    return append(
        s,
        action=action,
        outcome=outcome,
        actor=actor if actor is not None else current_actor(),
        request=request_info(),
        **fields,
    )


def record_now(
    *, action: str, outcome: str, actor: Mapping[str, Any] | None = None, **fields: Any
) -> int | None:
    """Append and commit in a transaction of its own; return the sequence number.

    Used for denials and failures: the request's own transaction is ended
    first (rolled back: a refused or failed request keeps none of its
    changes), so the entry never waits on, or is undone with, that work. An
    audit write that fails is logged loudly and never turns a clear error
    page into a traceback.
    """
    if has_request_context():
        from console import db

        db.session().rollback()
    try:
        with separate_session() as s:
            entry = record(s, action=action, outcome=outcome, actor=actor, **fields)
            seq = entry.seq
            s.commit()
            return seq
    except Exception:
        log.exception("could not write audit entry for %s (%s)", action, outcome)
        return None
