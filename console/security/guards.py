"""View guards: every page names the permission it needs."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import abort, request
from flask_login import current_user

from console.audit.service import record_now
from console.security.permissions import Permission

F = TypeVar("F", bound=Callable[..., Any])


def require(permission: Permission | str) -> Callable[[F], F]:
    """Answer 403 (and audit the refusal) unless the user has `permission`.

    Use below `@login_required`, so anonymous users are sent to sign in.
    """
    perm = Permission(permission)

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not current_user.can(perm):
                record_now(
                    action="page:view:denied",
                    outcome="denied",
                    target_type="page",
                    target_id=request.path,
                    details={
                        "needs": perm.value,
                        "query": request.query_string.decode("utf-8", "replace")[:500],
                    },
                )
                abort(403, f"Your role does not include {perm.value}.")
            return view(*args, **kwargs)

        wrapped.required_permission = perm  # type: ignore[attr-defined]
        return wrapped  # type: ignore[return-value]

    return decorator
