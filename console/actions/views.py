"""The confirm step and the POST of every declared action.

`GET /actions/<name>/<target_id>` renders the confirm step (a full page, or
the dialog body for htmx); `POST` to the same URL runs the action. These are
the only POST routes besides Stripe's webhook and logout.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    flash,
    get_flashed_messages,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required
from jinja2_fragments.flask import render_block
from werkzeug.wrappers import Response

from console import db
from console.actions.framework import (
    REGISTRY,
    Action,
    ActionForm,
    RunResult,
    audit_denied,
    audit_refused_form,
    new_idempotency_key,
    run_action,
    seen_token,
)
from console.audit.service import record_now
from console.ops.metrics import CONSOLE_ACTIONS
from console.security.auth import safe_next

bp = Blueprint("actions", __name__, url_prefix="/actions")

TEMPLATE = "actions/confirm.html"


def _is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def _on_confirm_page() -> bool:
    """The htmx request comes from the full-page confirm step (e.g. after a step-up).

    That page has no row to swap and no dialog open: answers replace its panel.
    """
    current = request.headers.get("HX-Current-URL", "")
    return _is_htmx() and urlsplit(current).path.startswith("/actions/")


def _into_panel(body: str, status: int) -> Response:
    resp = Response(body, status=status)
    resp.headers["HX-Retarget"] = "#confirm-panel"
    resp.headers["HX-Reswap"] = "outerHTML"
    return resp


def _render_confirm(
    action: Action[Any],
    target: Any,
    form: ActionForm,
    *,
    status: int = 200,
    error: str | None = None,
    stale: str | None = None,
) -> tuple[str, int] | Response:
    settings_seconds = _step_up_seconds()
    needs_step_up = action.high_risk and not current_user.recently_authenticated(settings_seconds)
    preview = None
    if action.preview is not None and stale is None and target is not None:
        preview = action.preview(db.session(), target, action.params(form))
    ctx = {
        "action": action,
        "target": target,
        "target_id": request.view_args["target_id"] if request.view_args else "",
        "form": form,
        "consequences": action.describe(target) if target is not None else [],
        "preview": preview,
        "error": error,
        "stale": stale,
        "needs_step_up": needs_step_up,
        "step_up_url": url_for("auth.login", sso=1, step_up=1, next=request.full_path.rstrip("?")),
        "cancel_url": form.next.data or (action.return_url(target) if target else "/"),
    }
    if _on_confirm_page():
        return _into_panel(render_block(TEMPLATE, "dialog", **ctx), status)
    if _is_htmx():
        return render_block(TEMPLATE, "dialog", **ctx), status
    return render_template(TEMPLATE, **ctx), status


def _step_up_seconds() -> int:
    from flask import current_app

    seconds: int = current_app.config["SETTINGS"].step_up_seconds
    return seconds


def _forbidden(action: Action[Any], target_id: str) -> tuple[str, int]:
    audit_denied(action, current_user, target_id, f"role lacks {action.permission.value}")
    CONSOLE_ACTIONS.labels(action.name, "denied").inc()
    message = f"You do not have permission to {action.label.lower()} ({action.permission.value})."
    if _is_htmx():
        return render_template("errors/_message.html", message=message, level="error"), 403
    return render_template("errors/403.html", message=message), 403


@bp.route("/<name>/<target_id>", methods=["GET", "POST"])
@login_required
def act(name: str, target_id: str) -> Any:
    """Confirm (GET) or run (POST) a declared action on one target."""
    action = REGISTRY.get(name)
    if action is None or len(target_id) > 128 or not target_id.isprintable():
        if request.method == "POST":
            record_now(
                action="page:request:failed",
                outcome="failed",
                target_type="action",
                target_id=f"{name}/{target_id}",
                details={
                    "error": "no such action, or the target id is too long or not printable",
                    "http_status": 404,
                },
            )
        abort(404)
    if not current_user.can(action.permission):
        return _forbidden(action, target_id)
    s = db.session()
    if request.method == "GET" and request.args.get("preview") == "1":
        return _preview(action, target_id)
    form = action.form()
    if request.method == "GET":
        target = action.load(s, target_id, False)
        if target is None:
            abort(404)
        _bind(action, form, target)
        form.idempotency_key.data = new_idempotency_key()
        form.next.data = safe_next(request.args.get("next"), action.return_url(target))
        if action.prefill is not None:
            action.prefill(target, form)
        _remember_seen(action, target, form)
        return _render_confirm(action, target, form, stale=action.precondition(target))

    form.next.data = safe_next(form.next.data, "/")
    target = action.load(s, target_id, False)
    if target is None:
        record_now(
            action=action.name,
            outcome="failed",
            target_type=action.target_type,
            target_id=target_id,
            details={"error": "no such target", "http_status": 404},
        )
        abort(404)
    _bind(action, form, target)
    if not form.validate_on_submit():
        s.rollback()
        audit_refused_form(action, current_user, target_id, form, "the form was refused")
        target = action.load(s, target_id, False)
        return _render_confirm(
            action, target, form, status=422, error="Please correct the fields below."
        )
    if action.ticket_required and not (form.ticket.data or "").strip():
        form.ticket.errors = [*form.ticket.errors, "This action requires a ticket id."]
        s.rollback()
        audit_refused_form(action, current_user, target_id, form, "a ticket id is required")
        target = action.load(s, target_id, False)
        return _render_confirm(action, target, form, status=422, error="A ticket id is required.")
    if action.high_risk and not current_user.recently_authenticated(_step_up_seconds()):
        audit_denied(action, current_user, target_id, "step-up re-authentication required")
        s.rollback()
        return _render_confirm(
            action,
            target,
            form,
            status=401,
            error="This is a high-risk action: sign in again at the identity provider "
            "(within the last 5 minutes) before confirming.",
        )
    s.rollback()  # end the read transaction; run_action opens its own
    result = run_action(s, action, target_id, form, current_user)
    CONSOLE_ACTIONS.labels(action.name, result.outcome).inc()
    return _respond(action, target_id, form, result)


def _remember_seen(action: Action[Any], target: Any, form: ActionForm) -> None:
    """Put the numbers this confirm step shows into the form (see `Action.seen`)."""
    if action.seen is not None and target is not None:
        form.seen.data = seen_token(action.seen(target))


def _preview(action: Action[Any], target_id: str) -> Any:
    """The dry-run block alone, for the parameters typed so far (htmx, read-only)."""
    if action.preview is None:
        abort(404)
    s = db.session()
    target = action.load(s, target_id, False)
    if target is None:
        abort(404)
    form = action.form(formdata=request.args, meta={"csrf": False})
    _bind(action, form, target)
    form.validate()  # money fields parse with the currency's exponent; errors stay unshown
    try:
        params = action.params(form)
    except (TypeError, ValueError, ArithmeticError):
        params = {}
    preview = action.preview(s, target, params)
    s.rollback()
    return render_block(TEMPLATE, "preview", action=action, preview=preview)


def _bind(action: Action[Any], form: ActionForm, target: Any) -> None:
    """Tell the form what it is about (the currency its amounts are typed in)."""
    if action.currency is not None:
        form.currency = action.currency(target)


def _respond(action: Action[Any], target_id: str, form: ActionForm, result: RunResult) -> Any:
    next_url = form.next.data or "/"
    ok = result.outcome in ("success", "replayed")
    level = result.level if ok else "error"
    if ok and result.reveal is not None:
        # Shown once, in this response only: no redirect, no flash, nothing stored.
        ctx = {"action": action, "result": result, "next_url": next_url}
        if _on_confirm_page():
            return _into_panel(render_block("actions/revealed.html", "dialog", **ctx), 200)
        if _is_htmx():
            return Response(render_block("actions/revealed.html", "dialog", **ctx), status=200)
        return render_template("actions/revealed.html", **ctx), 200
    if ok and _on_confirm_page():
        return _done_panel(action, target_id, result, level, next_url)
    if not _is_htmx() or _on_confirm_page():
        # Without JavaScript, or on the confirm page itself: the page answers.
        if ok:
            flash(result.message, level)
            return redirect(next_url, code=303)
        s = db.session()
        target = action.load(s, target_id, False)
        stale = action.precondition(target) if target is not None else None
        form.idempotency_key.data = new_idempotency_key()
        _remember_seen(action, target, form)  # the page now shows the current numbers
        return _render_confirm(
            action, target, form, status=result.status, error=result.message, stale=stale
        )

    if not ok:
        # The dialog shows the message; the row stays as it is until refreshed.
        body = render_template("errors/_message.html", message=result.message, level="error")
        return Response(body, status=result.status)
    flash_html = render_template(
        "_flash_oob.html", messages=[(level, result.message)], consume=get_flashed_messages
    )
    if action.row is not None and result.target is not None:
        template, block, ctx = action.row(result.target)
        row_html = render_block(template, block, **ctx)
        resp = Response(row_html + flash_html, status=200)
        resp.headers["HX-Retarget"] = f"#row-{action.target_type}-{target_id}"
        resp.headers["HX-Reswap"] = "outerHTML"
    else:
        # No row to swap: show the page the action returns to, with the flash, through
        # htmx (HX-Location: one request swapped into the body, not a full page load).
        flash(result.message, level)
        resp = Response("", status=200)
        resp.headers["HX-Location"] = json.dumps({"path": next_url, "target": "body"})
        return resp
    resp.headers["HX-Trigger"] = "console:close-dialog"
    return resp


def _done_panel(
    action: Action[Any], target_id: str, result: RunResult, level: str, next_url: str
) -> Response:
    """The outcome in place of the confirm page's form, with the ways back."""
    target = result.target
    if target is None:
        target = action.load(db.session(), target_id, False)
    done = {
        "message": result.message,
        "level": level,
        "next_url": next_url,
        "record_url": action.return_url(target) if target is not None else None,
    }
    body = render_block(TEMPLATE, "done", action=action, target_id=target_id, done=done)
    return _into_panel(body, result.status)


def action_url(name: str, target_id: Any, next_url: str | None = None) -> str:
    return url_for("actions.act", name=name, target_id=str(target_id), next=next_url)
