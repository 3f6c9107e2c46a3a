"""Error pages: a clear message and the request id, never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from console.audit.service import record_now
from console.pagination import BadCursor

log = logging.getLogger(__name__)

TITLES = {
    400: "Bad request",
    401: "Sign-in required",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Out of date",
    413: "Request too large",
    422: "Cannot process",
    429: "Too many requests",
    500: "Something went wrong",
    502: "An upstream service failed",
    503: "Unavailable",
}


def _wants_json() -> bool:
    return request.path.startswith(("/webhooks/stripe", "/healthz", "/metrics")) or (
        request.accept_mimetypes.best == "application/json"
    )


def render_error(status: int, message: str) -> tuple[Any, int]:
    if request.path.startswith("/api/"):
        # The ingest API answers RFC 9457 problem details, whatever went wrong.
        from console.integrations.api import problem

        return problem(status, TITLES.get(status, "Error"), message), status
    if _wants_json():
        return jsonify(error=message, status=status, request_id=g.get("request_id")), status
    if request.headers.get("HX-Request") == "true":
        return render_template("errors/_message.html", message=message, level="error"), status
    template = "errors/403.html" if status == 403 else "errors/error.html"
    return (
        render_template(
            template,
            status=status,
            title=TITLES.get(status, "Error"),
            message=message,
            request_id=g.get("request_id"),
        ),
        status,
    )


def _attempted() -> tuple[str | None, str, str]:
    """(declared action name or None, target type, target id) of the failed request."""
    args = request.view_args or {}
    if request.endpoint == "actions.act":
        from console.actions.framework import REGISTRY

        action = REGISTRY.get(str(args.get("name")))
        if action is not None:
            return action.name, action.target_type, str(args.get("target_id", ""))
    return None, "page", request.path


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError) -> Any:
        action, target_type, target_id = _attempted()
        record_now(
            action="security:csrf:denied",
            outcome="denied",
            target_type=target_type,
            target_id=target_id,
            details={
                "why": str(exc.description),
                "method": request.method,
                "attempted": action,
                "http_status": 400,
            },
        )
        return render_error(
            400,
            "The form's security token is missing, expired or not yours "
            f"({exc.description}). Nothing was changed. Reload the page and try again.",
        )

    @app.errorhandler(BadCursor)
    def _cursor(_exc: BadCursor) -> Any:
        return render_error(400, "That page link is not valid. Start again from the first page.")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Any:
        status = exc.code or 500
        default = {
            403: "You do not have permission to see this page.",
            404: "There is nothing at this address. Check the link or use the navigation.",
            405: "This address does not accept that kind of request.",
            413: "The request is larger than this console accepts.",
        }
        message = exc.description if exc.description and status not in default else None
        if status in default and exc.description and "The requested URL" not in exc.description:
            message = exc.description
        return render_error(status, message or default.get(status, TITLES.get(status, "Error")))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        if isinstance(exc, HTTPException):
            return _http(exc)
        log.exception("unhandled error on %s %s", request.method, request.path)
        # record_now ends (rolls back) the request's transaction first.
        action, target_type, target_id = _attempted()
        seq = record_now(
            action=action or "page:request:failed",
            outcome="failed",
            target_type=target_type,
            target_id=target_id,
            details={
                "error": f"{type(exc).__name__}: {exc}"[:1000],
                "method": request.method,
                "endpoint": request.endpoint,
                "http_status": 500,
            },
        )
        ref = f" (audit entry #{seq})" if seq else ""
        return render_error(
            InternalServerError.code,
            f"The console hit an unexpected error{ref}; nothing was half-saved. "
            "Quote the request id below when you report it.",
        )
