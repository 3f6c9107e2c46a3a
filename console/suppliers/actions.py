"""Guarded actions on supplier syncs: retry a failed sync from where it stopped (runbook 001).

Forwarding an order is `orders:supplier:forward` in `console/orders/actions.py`
(its target is the order); it sends through `console/suppliers/services.py`.
"""

from __future__ import annotations

from typing import Any

from flask import url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from console.actions.framework import Action, ActionContext, Outcome, declare
from console.db import parse_id
from console.security.permissions import Permission
from console.suppliers.models import Supplier, SupplierSyncRun, SyncStatus
from console.suppliers.services import start_resume


def load_run(s: Session, key: str, lock: bool) -> SupplierSyncRun | None:
    run_id = parse_id(key)
    if run_id is None:
        return None
    stmt = select(SupplierSyncRun).where(SupplierSyncRun.id == run_id)
    if lock:
        stmt = stmt.with_for_update(of=SupplierSyncRun, nowait=True)
    return s.scalar(stmt)


def run_snapshot(run: SupplierSyncRun) -> dict[str, Any]:
    return {
        "status": run.status.value,
        "pages_done": run.pages_done,
        "pages_total": run.pages_total,
        "failed_page": run.failed_page,
        "superseded_by_id": run.superseded_by_id,
    }


def run_url(run: SupplierSyncRun) -> str:
    return url_for("suppliers.run", run_id=run.id)


def run_row(run: SupplierSyncRun) -> tuple[str, str, dict[str, Any]]:
    from sqlalchemy.orm import object_session

    s = object_session(run)
    assert s is not None
    names = {sid: name for sid, name in s.execute(select(Supplier.id, Supplier.name))}
    return "suppliers/index.html", "run_row", {"run": run, "supplier_names": names}


def _precondition(run: SupplierSyncRun) -> str | None:
    if run.status != SyncStatus.FAILED:
        return f"sync run #{run.id} is {run.status.value}, not failed."
    if run.superseded_by_id is not None:
        return f"run #{run.superseded_by_id} has taken over the work of sync run #{run.id}."
    return None


def _describe(run: SupplierSyncRun) -> list[tuple[str, str]]:
    from sqlalchemy.orm import object_session

    s = object_session(run)
    supplier = s.get(Supplier, run.supplier_id) if s is not None else None
    start = run.failed_page or run.next_page
    of = f" of {run.pages_total}" if run.pages_total else ""
    return [
        ("Supplier", supplier.name if supplier else str(run.supplier_id)),
        ("Failed run", f"#{run.id}, {run.items_synced} products in {run.pages_done} page(s)"),
        ("Error", run.error or "—"),
        ("Resumes at", f"page {start}{of}"),
        (
            "Effect",
            f"Starts a new sync run from page {start}, in the background; pages 1 to "
            f"{start - 1} are kept as synced. This page and the run's page show its progress, "
            "and its result is written to the audit log.",
        ),
    ]


def _effect(ctx: ActionContext, run: SupplierSyncRun) -> Outcome:
    from console.db import utcnow
    from console.jobs.engine import enqueue
    from console.jobs.tasks import SUPPLIER_SYNC_RESUME

    resumed = start_resume(run, started_by=ctx.user.sub)
    ctx.session.add(resumed)
    ctx.session.flush()
    run.superseded_by_id = resumed.id
    run.superseded_at = utcnow()
    new_id = resumed.id
    # Enqueued in this transaction: a worker resumes the sync once this committed.
    enqueue(
        ctx.session,
        SUPPLIER_SYNC_RESUME,
        lock=f"supplier-sync-run-{new_id}",
        run_id=new_id,
        actor=ctx.user.actor(),
    )
    of = f" of {run.pages_total}" if run.pages_total else ""
    return Outcome(
        f"Sync run #{new_id} started from page {resumed.start_page}{of}; its progress "
        "shows on this page.",
        {"resumed_run_id": new_id, "start_page": resumed.start_page},
    )


retry_sync = declare(
    Action[SupplierSyncRun](
        name="suppliers:sync:retry",
        label="Retry sync",
        permission=Permission.SUPPLIERS_SYNC_RETRY,
        target_type="supplier_sync_run",
        load=load_run,
        precondition=_precondition,
        describe=_describe,
        effect=_effect,
        snapshot=run_snapshot,
        return_url=lambda run: url_for("suppliers.index"),
        row=run_row,
        reason_help="Why now (e.g. the supplier confirmed their API is back).",
    )
)
