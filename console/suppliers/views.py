"""The supplier queue (runbook 001): orders waiting to be forwarded, failed syncs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import Blueprint, abort, render_template, request
from flask_login import login_required
from jinja2_fragments.flask import render_block
from sqlalchemy import select

from console import db
from console.audit.models import AuditEntry
from console.audit.queries import history_for
from console.ops.jobs import JOBS
from console.ops.models import JobRun
from console.orders.facts import prefetch
from console.orders.models import Order
from console.pagination import SortOption, keyset_page
from console.security.guards import require
from console.security.permissions import Permission
from console.suppliers.models import Supplier, SupplierSyncRun, SyncStatus
from console.suppliers.services import FORWARD_GRACE, JOB, waiting_condition

bp = Blueprint("suppliers", __name__)

SORTS = [
    SortOption("waiting", "In processing since", Order.updated_at),
    SortOption("amount", "Amount", Order.amount),
]
OPEN_RUNS_LIMIT = 50


def supplier_names(s: Any) -> dict[int, str]:
    return {sid: name for sid, name in s.execute(select(Supplier.id, Supplier.name))}


def last_forward_attempts(s: Any, external_ids: Sequence[str]) -> dict[str, AuditEntry]:
    """The newest forward attempt (audit entry) of each order, in one query."""
    if not external_ids:
        return {}
    rows = s.scalars(
        select(AuditEntry)
        .where(
            AuditEntry.target_type == "order",
            AuditEntry.target_id.in_(list(external_ids)),
            AuditEntry.action == "orders:supplier:forward",
        )
        .order_by(AuditEntry.target_id, AuditEntry.seq.desc())
        .distinct(AuditEntry.target_id)
    ).all()
    return {e.target_id: e for e in rows if e.target_id}


def order_row_context(order: Order) -> dict[str, Any]:
    from sqlalchemy.orm import object_session

    s = object_session(order)
    assert s is not None
    return {
        "order": order,
        "supplier_names": supplier_names(s),
        "attempts": last_forward_attempts(s, [order.external_id]),
    }


@bp.get("/suppliers")
@login_required
@require(Permission.QUEUES_VIEW)
def index() -> Any:
    """Paid orders waiting for the supplier, and failed catalogue syncs."""
    s = db.session()
    args = request.args.to_dict()
    names = supplier_names(s)
    stmt = select(Order).where(waiting_condition())
    supplier = args.get("supplier", "")
    if supplier.isdigit() and int(supplier) in names:
        stmt = stmt.where(Order.supplier_id == int(supplier))
    else:
        supplier = ""
    q = (args.get("q") or "").strip()[:64]
    if q:
        stmt = stmt.where(Order.external_id == q)
    page = keyset_page(
        s,
        stmt,
        id_column=Order.id,
        sort_options=SORTS,
        args=args,
        default_sort="waiting",
        default_direction="asc",
    )
    prefetch(s, page.rows)  # what the order buttons' preconditions read, in three queries
    attempts = last_forward_attempts(s, [o.external_id for o in page.rows])
    open_runs = s.scalars(
        select(SupplierSyncRun)
        .where(
            SupplierSyncRun.status == SyncStatus.FAILED,
            SupplierSyncRun.superseded_by_id.is_(None),
        )
        .order_by(SupplierSyncRun.started_at, SupplierSyncRun.id)
        .limit(OPEN_RUNS_LIMIT)
    ).all()
    recent_runs = s.scalars(
        select(SupplierSyncRun).order_by(SupplierSyncRun.id.desc()).limit(10)
    ).all()
    last_job = s.scalar(select(JobRun).where(JobRun.job == JOB).order_by(JobRun.id.desc()).limit(1))
    ctx = {
        "page": page,
        "args": args,
        "q": q,
        "supplier": supplier,
        "supplier_names": names,
        "attempts": attempts,
        "open_runs": open_runs,
        "recent_runs": recent_runs,
        "last_job": last_job,
        "job_spec": JOBS[JOB],
        "grace_minutes": int(FORWARD_GRACE.total_seconds() // 60),
    }
    return render_template("suppliers/index.html", **ctx)


@bp.get("/suppliers/runs/<int(min=1, max=2147483647):run_id>")
@login_required
@require(Permission.QUEUES_VIEW)
def run(run_id: int) -> Any:
    """One sync run: its pages, error, the runs before and after it, and its history."""
    s = db.session()
    sync_run = s.get(SupplierSyncRun, run_id)
    if sync_run is None:
        abort(404, f"There is no supplier sync run {run_id}.")
    supplier = s.get(Supplier, sync_run.supplier_id)
    resumed_from = (
        s.get(SupplierSyncRun, sync_run.resumed_from_id) if sync_run.resumed_from_id else None
    )
    successor = (
        s.get(SupplierSyncRun, sync_run.superseded_by_id) if sync_run.superseded_by_id else None
    )
    return render_template(
        "suppliers/run.html",
        run=sync_run,
        supplier=supplier,
        resumed_from=resumed_from,
        successor=successor,
        history_entries=history_for(s, "supplier_sync_run", str(sync_run.id)),
    )


@bp.get("/suppliers/runs/<int(min=1, max=2147483647):run_id>/status")
@login_required
@require(Permission.QUEUES_VIEW)
def run_status(run_id: int) -> Any:
    """The self-polling status of one run (htmx; stops polling when it has finished)."""
    sync_run = db.session().get(SupplierSyncRun, run_id)
    if sync_run is None:
        abort(404)
    return render_block("suppliers/index.html", "run_status", run=sync_run)
