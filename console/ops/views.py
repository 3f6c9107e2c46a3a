"""Health, metrics and the job-health page (runbook 003's opsHealth)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, redirect, render_template, url_for
from flask_login import login_required
from sqlalchemy import func, select, text

from console import db
from console.db import utcnow
from console.ops.jobs import job_health
from console.ops.metrics import metrics_response
from console.payments.models import WebhookEvent
from console.security.guards import require

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Any:
    """JSON health: database, last webhook time, job lateness. No login."""
    now = utcnow()
    s = db.session()
    body: dict[str, Any] = {"status": "ok", "time": now.isoformat()}
    try:
        s.execute(text("SELECT 1"))
        body["database"] = "ok"
        last = s.scalar(select(func.max(WebhookEvent.received_at)))
        body["last_webhook_at"] = last.isoformat() if last else None
        body["jobs"] = {
            h.spec.name: {
                "last_success_at": h.last_success_at.isoformat() if h.last_success_at else None,
                "late": h.late,
            }
            for h in job_health(s, now)
        }
        body["late_jobs"] = sorted(name for name, j in body["jobs"].items() if j["late"])
        if body["late_jobs"]:
            body["status"] = "degraded"
        s.rollback()
    except Exception as exc:
        s.rollback()
        body.update(status="error", database=f"error: {type(exc).__name__}")
        return jsonify(body), 503
    return jsonify(body)


@bp.get("/favicon.ico")
def favicon() -> Any:
    return redirect(url_for("static", filename="favicon.svg"), code=301)


@bp.get("/metrics")
def metrics() -> Any:
    return metrics_response()


@bp.get("/ops/jobs")
@login_required
@require("queues:all:view")
def jobs() -> Any:
    return render_template("ops/jobs.html", health=job_health(db.session(), utcnow()), now=utcnow())
