"""Reconciliation: runs (with a polling fragment) and explained findings."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from flask import Blueprint, abort, render_template, request
from flask_login import login_required
from jinja2_fragments.flask import render_block
from sqlalchemy import select
from sqlalchemy.orm import Session

from console import db
from console.audit.queries import history_for
from console.db import one_of
from console.orders.facts import prefetch
from console.orders.models import Order
from console.pagination import SortOption, keyset_page
from console.reconciliation.actions import load_reconciler
from console.reconciliation.models import (
    FindingStatus,
    FindingType,
    ReconciliationFinding,
    ReconciliationRun,
    RunStatus,
    Severity,
)
from console.security.guards import require
from console.security.permissions import Permission

bp = Blueprint("reconciliation", __name__)
SORTS = [
    SortOption("severity", "Severity", ReconciliationFinding.severity),
    SortOption("seen", "Last seen", ReconciliationFinding.last_seen_at),
]
SEVERITY_ORDER = {s.value: i for i, s in enumerate(Severity)}


@bp.get("/reconciliation")
@login_required
@require(Permission.QUEUES_VIEW)
def index() -> Any:
    """Open findings (filterable) and the recent runs."""
    s = db.session()
    runs = s.scalars(
        select(ReconciliationRun).order_by(ReconciliationRun.id.desc()).limit(10)
    ).all()
    return render_template(
        "reconciliation/index.html", runs=runs, **_findings(s, request.args.to_dict())
    )


def _findings(s: Session, args: dict[str, str]) -> dict[str, Any]:
    """The findings section: filters from the URL, one keyset page, the run button."""
    status = args.get("status", "open")
    stmt = select(ReconciliationFinding)
    if status in {st.value for st in FindingStatus}:
        stmt = stmt.where(ReconciliationFinding.status == FindingStatus(status))
    if args.get("severity") in {sv.value for sv in Severity}:
        stmt = stmt.where(ReconciliationFinding.severity == Severity(args["severity"]))
    if args.get("type") in {t.value for t in FindingType}:
        stmt = stmt.where(ReconciliationFinding.type == FindingType(args["type"]))
    page = keyset_page(
        s,
        stmt,
        id_column=ReconciliationFinding.id,
        sort_options=SORTS,
        args=args,
        default_sort="seen",
    )
    page.rows.sort(key=lambda f: SEVERITY_ORDER[f.severity.value])
    # The findings' orders as entities, with what the order actions' preconditions
    # read (a finding's Refund button asks the order's refund precondition): loaded
    # once per page, not per row (57 statements a page before, bench/pages.py).
    order_ids = {f.order_id for f in page.rows if f.order_id}
    loaded = s.scalars(select(Order).where(one_of(Order.id, order_ids))).all() if order_ids else []
    prefetch(s, loaded)
    orders: dict[int, str] = {o.id: o.external_id for o in loaded}
    return {
        "page": page,
        "args": args,
        "status": status,
        "orders": orders,
        "reconciler": load_reconciler(s, "stripe", False),
        "statuses": [st.value for st in FindingStatus],
        "severities": [sv.value for sv in Severity],
        "types": [t.value for t in FindingType],
    }


@bp.get("/reconciliation/runs/<int(min=1, max=2147483647):run_id>")
@login_required
@require(Permission.QUEUES_VIEW)
def run_status(run_id: int) -> Any:
    """The polling fragment of one run."""
    s = db.session()
    run = s.get(ReconciliationRun, run_id)
    if run is None:
        abort(404)
    row = render_block("reconciliation/index.html", "run_row", run=run)
    if run.status == RunStatus.RUNNING or not request.headers.get("HX-Request"):
        return row
    # Finished: the findings it produced replace the stale list, same filters.
    current = urlsplit(request.headers.get("HX-Current-URL", ""))
    args = dict(parse_qsl(current.query)) if current.path == "/reconciliation" else {}
    findings = render_block("reconciliation/index.html", "findings", oob=True, **_findings(s, args))
    # In a <template>: the row is parsed in table context, the section must not be.
    return f"{row}<template>{findings}</template>"


@bp.get("/reconciliation/findings/<path:fingerprint>")
@login_required
@require(Permission.QUEUES_VIEW)
def finding(fingerprint: str) -> Any:
    s = db.session()
    f = s.scalar(
        select(ReconciliationFinding).where(ReconciliationFinding.fingerprint == fingerprint)
    )
    if f is None:
        abort(404, "There is no such finding.")
    order = s.get(Order, f.order_id) if f.order_id else None
    return render_template(
        "reconciliation/finding.html",
        f=f,
        order=order,
        history_entries=history_for(s, "finding", f.fingerprint),
    )
