"""Health, metrics and the job-health page (runbook 003's opsHealth)."""

from __future__ import annotations

import hmac
import ipaddress
from functools import lru_cache
from typing import Any

from flask import Blueprint, current_app, jsonify, redirect, render_template, request, url_for
from flask_login import login_required
from sqlalchemy import func, select, text

from console import db
from console.db import utcnow
from console.ops.jobs import job_health
from console.ops.metrics import metrics_response
from console.payments.models import WebhookEvent
from console.security.guards import require

bp = Blueprint("ops", __name__)


@lru_cache(maxsize=1)
def migrations_head() -> str | None:
    """The newest migration this code ships (read once from migrations/)."""
    from alembic.script import ScriptDirectory

    from console.cli import alembic_config

    head: str | None = ScriptDirectory.from_config(
        alembic_config("postgresql://")
    ).get_current_head()
    return head


def machine_caller() -> bool:
    """Whether the caller may read machine details: the bearer token or an allowed network.

    `METRICS_TOKEN` (Authorization: Bearer ...) or a client address inside
    `METRICS_ALLOW_CIDRS` (after ProxyFix, so behind a proxy set PROXY_FIX_HOPS).
    """
    settings = current_app.config["SETTINGS"]
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if (
        settings.metrics_token
        and scheme.lower() == "bearer"
        and hmac.compare_digest(token.strip().encode(), settings.metrics_token.encode())
    ):
        return True
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    return any(address in network for network in settings.metrics_allow_cidrs)


@bp.get("/healthz")
def healthz() -> Any:
    """JSON health. No login.

    503 when the database does not answer or its migrations are behind the
    code (a load balancer then sends traffic elsewhere), 200 otherwise.
    Anonymous callers learn only up or down; the metrics token or an allowed
    network also gets the database, migrations, last webhook time and job
    lateness (late jobs: `degraded`).
    """
    now = utcnow()
    s = db.session()
    if not machine_caller():
        try:
            applied = s.scalar(text("SELECT version_num FROM alembic_version"))
            s.rollback()
        except Exception:
            s.rollback()
            return jsonify(status="down"), 503
        if applied != migrations_head():
            return jsonify(status="down"), 503
        return jsonify(status="up")
    body: dict[str, Any] = {"status": "ok", "time": now.isoformat()}
    try:
        s.execute(text("SELECT 1"))
        body["database"] = "ok"
        applied = s.scalar(text("SELECT version_num FROM alembic_version"))
        head = migrations_head()
        body["migrations"] = {"applied": applied, "head": head}
        if applied != head:
            s.rollback()
            body.update(status="error", error="database migrations are behind the code")
            return jsonify(body), 503
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
    """Prometheus text, for the bearer token or an allowed network only."""
    if not machine_caller():
        resp = jsonify(
            error="Metrics need a bearer token (METRICS_TOKEN) or an address in "
            "METRICS_ALLOW_CIDRS.",
            status=401,
        )
        resp.status_code = 401
        resp.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return resp
    return metrics_response()


@bp.get("/ops/jobs")
@login_required
@require("queues:all:view")
def jobs() -> Any:
    now = utcnow()
    health = job_health(db.session(), now, history=True)
    return render_template("ops/jobs.html", health=health, now=now)
