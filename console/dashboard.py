"""The dashboard: one card per queue, each a count linking to its page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template
from flask_login import current_user, login_required

from console import db
from console.db import utcnow
from console.queues import queue_counts
from console.security.permissions import Permission

bp = Blueprint("dashboard", __name__)


@bp.get("/")
@login_required
def index() -> Any:
    """Queue counts for whoever may see queues; auditors land on the audit log."""
    if not current_user.can(Permission.QUEUES_VIEW):
        return render_template("dashboard.html", counts=None)
    counts = queue_counts(db.session(), utcnow())
    return render_template("dashboard.html", counts=counts)
