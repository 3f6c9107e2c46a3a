"""Record audit entries for the current request and user."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any, TypeVar

from flask import g, has_request_context, make_response, request
from flask_login import current_user
from sqlalchemy.orm import Session

from console.audit import checkpoints as _checkpoints  # noqa: F401  (every-N checkpoints)
from console.audit.chain import append
from console.audit.models import AuditEntry
from console.db import separate_session

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


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
    try:
        # Who and from where, before the request's transaction ends (loading the
        # signed-in user reads the database through the request's session).
        who = actor if actor is not None else current_actor()
        if has_request_context():
            from console import db

            db.session().rollback()
        with separate_session() as s:
            entry = record(s, action=action, outcome=outcome, actor=who or {}, **fields)
            seq = entry.seq
            s.commit()
            return seq
    except Exception:
        log.exception("could not write audit entry for %s (%s)", action, outcome)
        return None


def audited_access(
    action: str,
    *,
    target: Callable[[dict[str, Any]], tuple[str | None, str | None]] | None = None,
    on_success: bool = True,
) -> Callable[[F], F]:
    """Record every read of the audit log itself (PCI DSS 10.2.1.3), and its failures.

    Wraps a view below its permission guard (a refusal is recorded by the
    guard): a page answered with status < 400 is a `success` entry with the
    query it was asked (the filter), a 4xx/5xx or an exception a `failed`
    one. `on_success=False` for views that record a richer entry themselves.
    """

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            target_type, target_id = target(kwargs) if target else ("audit_log", None)
            query = {k: v[:500] for k, v in request.args.items()}
            try:
                response = make_response(view(*args, **kwargs))
            except Exception as exc:
                status = getattr(exc, "code", None) or 500
                record_now(
                    action=action,
                    outcome="failed",
                    target_type=target_type,
                    target_id=target_id,
                    params=query,
                    details={"status": status, "error": str(exc)[:500]},
                )
                raise
            if response.status_code >= 400:
                record_now(
                    action=action,
                    outcome="failed",
                    target_type=target_type,
                    target_id=target_id,
                    params=query,
                    details={"status": response.status_code},
                )
            elif on_success:
                record_now(
                    action=action,
                    outcome="success",
                    target_type=target_type,
                    target_id=target_id,
                    params=query,
                )
            return response

        return wrapped  # type: ignore[return-value]

    return decorator
