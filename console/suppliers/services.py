"""Supplier work (runbook 001): forward paid orders, sync catalogues, resume a failed sync.

Plain functions taking a Session: the CLI, the actions and a job engine call
the same code, with no Flask request state. Concurrency:

- an order is forwarded under its row lock (NOWAIT from a person, SKIP
  LOCKED from the job) with a deterministic idempotency key, so the supplier
  gets it once however often and by whomever it is sent;
- a supplier's catalogue is synced under an advisory lock per supplier
  (a retry and the job never sync one supplier at once);
- `sync_suppliers` takes an advisory lock for the whole job: a second run at
  the same time reports `skipped` and does nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, selectinload

from console.audit.service import record
from console.db import advisory_lock, utcnow
from console.ops.metrics import SUPPLIER_SYNC_FAILURES
from console.orders.models import Order, OrderStatus
from console.suppliers.gateway import ForwardedOrder, SupplierError, SupplierGateway
from console.suppliers.models import Supplier, SupplierProduct, SupplierSyncRun, SyncStatus

JOB = "supplier-sync"
# Advisory lock keys (two-int form): the whole job, and one supplier's catalogue.
LOCK_SUPPLIER = 11_002
FORWARD_GRACE = timedelta(minutes=15)
"""The job forwards an order only after the shop had this long to do it itself."""
FORWARD_BATCH = 200
MAX_PAGES = 10_000
INTERRUPTED_AFTER = timedelta(minutes=2)
SYSTEM_ACTOR: dict[str, Any] = {"sub": "system:supplier-sync", "email": None, "roles": ["system"]}


# ------------------------------------------------------------------ forwarding


def waiting_condition() -> ColumnElement[bool]:
    """Paid orders handed to processing and not forwarded (index ix_orders_stuck_processing)."""
    return and_(Order.status == OrderStatus.PROCESSING, Order.supplier_forwarded_at.is_(None))


def forward_key(order: Order) -> str:
    """The order's idempotency key at the supplier: one per order, never random."""
    return f"forward-{order.external_id}"


def order_payload(order: Order) -> dict[str, Any]:
    """What the supplier gets: the order reference and its lines (no payment data)."""
    return {
        "reference": order.external_id,
        "currency": order.currency,
        "lines": [{"sku": line.sku, "quantity": line.quantity} for line in order.lines],
    }


def forward_order(s: Session, gw: SupplierGateway, order: Order) -> ForwardedOrder:
    """Send one order to its supplier and record the reference; the caller locks and commits."""
    supplier = s.get(Supplier, order.supplier_id) if order.supplier_id else None
    if supplier is None:
        raise SupplierError("refused", "the order has no supplier to forward it to")
    try:
        result = gw.forward_order(
            supplier.name, order_payload(order), idempotency_key=forward_key(order)
        )
    except SupplierError:
        SUPPLIER_SYNC_FAILURES.inc()
        raise
    order.supplier_forwarded_at = utcnow()
    order.supplier_order_ref = result.reference
    return result


def forward_snapshot(order: Order) -> dict[str, Any]:
    return {
        "status": order.status.value,
        "supplier_forwarded_at": order.supplier_forwarded_at,
        "supplier_order_ref": order.supplier_order_ref,
    }


# ------------------------------------------------------------------ catalogue sync


def _store_page(s: Session, supplier: Supplier, run: SupplierSyncRun, items: list[Any]) -> int:
    rows: dict[str, dict[str, Any]] = {}
    now = utcnow()
    for item in items:
        rows[item["sku"]] = {
            "supplier_id": supplier.id,
            "sku": item["sku"],
            "name": item["name"],
            "available": item["available"],
            "synced_at": now,
            "sync_run_id": run.id,
        }
    if not rows:
        return 0
    stmt = pg_insert(SupplierProduct).values(list(rows.values()))
    s.execute(
        stmt.on_conflict_do_update(
            index_elements=[SupplierProduct.supplier_id, SupplierProduct.sku],
            set_={
                "name": stmt.excluded.name,
                "available": stmt.excluded.available,
                "synced_at": stmt.excluded.synced_at,
                "sync_run_id": stmt.excluded.sync_run_id,
            },
        )
    )
    return len(rows)


def sync_pages(s: Session, gw: SupplierGateway, supplier: Supplier, run: SupplierSyncRun) -> None:
    """Fetch and store pages from `run.next_page` to the last, committing each page.

    Sets the run's final status but leaves that last change uncommitted, so
    the caller commits it with its audit entry. A failure records the page
    it stopped at; the pages before it stay stored.
    """
    page = run.next_page
    while page <= MAX_PAGES:
        try:
            result = gw.list_products(supplier.name, page)
        except SupplierError as exc:
            s.rollback()
            of = f" of {run.pages_total}" if run.pages_total else ""
            run.status = SyncStatus.FAILED
            run.failed_page = page
            run.retryable = exc.retryable
            run.error = f"{exc} on page {page}{of}"[:2000]
            run.finished_at = utcnow()
            SUPPLIER_SYNC_FAILURES.inc()
            return
        run.items_synced += _store_page(s, supplier, run, result.items)
        run.pages_done = page
        run.pages_total = result.pages
        run.catalog_version = result.catalog_version
        s.commit()
        if page >= result.pages:
            break
        page += 1
    run.status = SyncStatus.SUCCEEDED
    run.failed_page = None
    run.retryable = None
    run.error = None
    run.finished_at = utcnow()


def supersede_older(s: Session, run: SupplierSyncRun) -> int:
    """Older open failed runs of the supplier are taken over by `run`."""
    result = s.execute(
        update(SupplierSyncRun)
        .where(
            SupplierSyncRun.supplier_id == run.supplier_id,
            SupplierSyncRun.id < run.id,
            SupplierSyncRun.status == SyncStatus.FAILED,
            SupplierSyncRun.superseded_by_id.is_(None),
        )
        .values(superseded_by_id=run.id, superseded_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def run_summary(run: SupplierSyncRun) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "status": run.status.value,
        "start_page": run.start_page,
        "pages_done": run.pages_done,
        "pages_total": run.pages_total,
        "failed_page": run.failed_page,
        "items_synced": run.items_synced,
        "catalog_version": run.catalog_version,
        "error": run.error,
    }


def start_resume(origin: SupplierSyncRun, started_by: str) -> SupplierSyncRun:
    """A new run that continues `origin` from the page it stopped at; the caller adds it."""
    start = origin.failed_page or origin.next_page
    return SupplierSyncRun(
        supplier_id=origin.supplier_id,
        status=SyncStatus.RUNNING,
        started_at=utcnow(),
        start_page=start,
        pages_done=start - 1,
        pages_total=origin.pages_total,
        catalog_version=origin.catalog_version,
        resumed_from_id=origin.id,
        started_by=started_by,
    )


def resume_sync(
    s: Session, gw: SupplierGateway, run_id: int, *, actor: Mapping[str, Any]
) -> SupplierSyncRun | None:
    """Run a resume created by the Retry sync action (a job worker calls this)."""
    run = s.get(SupplierSyncRun, run_id)
    if run is None or run.status != SyncStatus.RUNNING:
        return run
    supplier = s.get(Supplier, run.supplier_id)
    assert supplier is not None
    s.commit()
    with advisory_lock(s, LOCK_SUPPLIER, supplier.id) as got:
        s.refresh(run)
        if run.status != SyncStatus.RUNNING:
            return run  # the job found it interrupted meanwhile
        if not got:
            run.status = SyncStatus.FAILED
            run.failed_page = run.next_page
            run.retryable = True
            run.error = f"another sync of {supplier.name} was running; retry when it has finished"
            run.finished_at = utcnow()
            SUPPLIER_SYNC_FAILURES.inc()
        else:
            sync_pages(s, gw, supplier, run)
        record(
            s,
            action="suppliers:sync:run",
            outcome="success" if run.status == SyncStatus.SUCCEEDED else "failed",
            actor=actor,
            target_type="supplier_sync_run",
            target_id=str(run.resumed_from_id or run.id),
            reason=f"retry of sync run #{run.resumed_from_id}, run #{run.id}",
            details={**run_summary(run), "supplier": supplier.name},
        )
        s.commit()
    return run


# ------------------------------------------------------------------ the job


@dataclass
class SyncReport:
    scanned: int = 0
    acted: int = 0
    errors: int = 0
    last_error: str | None = None
    dry_run: bool = False
    lines: list[str] = field(default_factory=list)


def _mark_interrupted(s: Session, report: SyncReport) -> None:
    """Runs left `running` by a process that stopped: failed at their next page, retryable."""
    cutoff = utcnow() - INTERRUPTED_AFTER
    stale = s.scalars(
        select(SupplierSyncRun).where(
            SupplierSyncRun.status == SyncStatus.RUNNING, SupplierSyncRun.started_at < cutoff
        )
    ).all()
    for run in stale:
        with advisory_lock(s, LOCK_SUPPLIER, run.supplier_id) as got:
            if not got:
                continue  # still being worked on
            run.status = SyncStatus.FAILED
            run.failed_page = run.next_page
            run.retryable = True
            run.error = f"interrupted: the process running it stopped before page {run.next_page}"
            run.finished_at = utcnow()
            s.commit()
            report.lines.append(f"run #{run.id}: marked interrupted at page {run.failed_page}")


def _sync_catalogues(s: Session, gw: SupplierGateway, report: SyncReport) -> None:
    for supplier in s.scalars(select(Supplier).order_by(Supplier.id)).all():
        report.scanned += 1
        with advisory_lock(s, LOCK_SUPPLIER, supplier.id) as got:
            if not got:
                report.lines.append(f"{supplier.name}: skipped, a retry of its sync is running")
                continue
            run = SupplierSyncRun(
                supplier_id=supplier.id,
                status=SyncStatus.RUNNING,
                started_at=utcnow(),
                started_by=str(SYSTEM_ACTOR["sub"]),
            )
            s.add(run)
            s.commit()
            sync_pages(s, gw, supplier, run)
            taken_over = supersede_older(s, run)
            s.commit()
        if run.status == SyncStatus.SUCCEEDED:
            report.acted += 1
            report.lines.append(
                f"{supplier.name}: run #{run.id} synced {run.items_synced} products "
                f"in {run.pages_done} pages"
                + (f", took over {taken_over} failed run(s)" if taken_over else "")
            )
        else:
            report.errors += 1
            report.last_error = f"{supplier.name}: {run.error}"
            report.lines.append(f"{supplier.name}: run #{run.id} failed: {run.error}")


def _forward_waiting(s: Session, gw: SupplierGateway, report: SyncReport) -> None:
    cutoff = utcnow() - FORWARD_GRACE
    ids = s.scalars(
        select(Order.id)
        .where(waiting_condition(), Order.updated_at < cutoff)
        .order_by(Order.updated_at, Order.id)
        .limit(FORWARD_BATCH)
    ).all()
    s.rollback()
    unavailable: set[int] = set()
    for order_id in ids:
        order = s.scalar(
            select(Order)
            .where(Order.id == order_id, waiting_condition())
            .options(selectinload(Order.lines))
            .with_for_update(of=Order, skip_locked=True)
        )
        if order is None:  # a person is acting on it, or it was forwarded meanwhile
            s.rollback()
            continue
        report.scanned += 1
        if order.supplier_id is None or order.supplier_id in unavailable:
            why = "no supplier" if order.supplier_id is None else "its supplier is unavailable"
            report.lines.append(f"{order.external_id}: left for a person ({why})")
            s.rollback()
            continue
        before = forward_snapshot(order)
        try:
            result = forward_order(s, gw, order)
        except SupplierError as exc:
            s.rollback()
            if exc.retryable:
                unavailable.add(order.supplier_id)  # do not wait out every timeout
            record(
                s,
                action="orders:supplier:forward",
                outcome="failed",
                actor=SYSTEM_ACTOR,
                target_type="order",
                target_id=order.external_id,
                reason="supplier sync job: forward an order waiting in processing",
                details={
                    "error": str(exc),
                    "supplier_error": exc.kind,
                    "retryable": exc.retryable,
                    "idempotency_key": forward_key(order),
                },
            )
            s.commit()
            report.errors += 1
            report.last_error = f"{order.external_id}: {exc}"
            report.lines.append(f"{order.external_id}: not forwarded: {exc}")
            continue
        record(
            s,
            action="orders:supplier:forward",
            outcome="success",
            actor=SYSTEM_ACTOR,
            target_type="order",
            target_id=order.external_id,
            reason="supplier sync job: forward an order waiting in processing",
            before=before,
            after=forward_snapshot(order),
            details={
                "supplier_ref": result.reference,
                "replayed": result.replayed,
                "idempotency_key": forward_key(order),
            },
        )
        s.commit()
        report.acted += 1
        report.lines.append(
            f"{order.external_id}: forwarded, supplier reference {result.reference}"
        )


def _dry_run(s: Session, report: SyncReport) -> None:
    for supplier in s.scalars(select(Supplier).order_by(Supplier.id)).all():
        report.scanned += 1
        open_run = s.scalar(
            select(SupplierSyncRun)
            .where(
                SupplierSyncRun.supplier_id == supplier.id,
                SupplierSyncRun.status == SyncStatus.FAILED,
                SupplierSyncRun.superseded_by_id.is_(None),
            )
            .order_by(SupplierSyncRun.id.desc())
        )
        extra = (
            f" (takes over failed run #{open_run.id}, stopped at page {open_run.failed_page})"
            if open_run
            else ""
        )
        report.lines.append(f"{supplier.name}: would sync the catalogue from page 1{extra}")
    cutoff = utcnow() - FORWARD_GRACE
    for external_id in s.scalars(
        select(Order.external_id)
        .where(waiting_condition(), Order.updated_at < cutoff)
        .order_by(Order.updated_at, Order.id)
        .limit(FORWARD_BATCH)
    ):
        report.scanned += 1
        report.lines.append(f"{external_id}: would forward to its supplier")
    s.rollback()


def sync_suppliers(s: Session, gw: SupplierGateway, *, dry_run: bool = False) -> SyncReport:
    """The supplier sync job's work: every supplier's catalogue, then the waiting orders.

    Run it as the job `supplier-sync` (`ops.jobs.execute`: the job's lock, so a
    second copy at the same time skips, and its JobRun record).
    """
    report = SyncReport(dry_run=dry_run)
    if dry_run:
        _dry_run(s, report)
        return report
    _mark_interrupted(s, report)
    _sync_catalogues(s, gw, report)
    _forward_waiting(s, gw, report)
    return report
