"""Supplier catalogue sync (runbook 001): pages, failures, resume, job health, concurrency."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from console import db
from console.audit.models import AuditEntry
from console.db import utcnow
from console.ops.jobs import JobSkipped, execute
from console.ops.metrics import SUPPLIER_SYNC_FAILURES
from console.ops.models import JobRun, JobStatus
from console.orders.models import Order
from console.suppliers.models import SupplierProduct, SupplierSyncRun, SyncStatus
from tests.actions.helpers import submit
from tests.conftest import AuthActions
from tests.factories import make_failed_run, make_supplier, make_waiting_order


def runs(app) -> list[SupplierSyncRun]:
    with app.app_context():
        return list(db.session().scalars(select(SupplierSyncRun).order_by(SupplierSyncRun.id)))


def job_runs(app) -> list[JobRun]:
    with app.app_context():
        return list(
            db.session().scalars(
                select(JobRun).where(JobRun.job == "supplier-sync").order_by(JobRun.id)
            )
        )


def products(app, supplier_id: int) -> int:
    with app.app_context():
        return int(
            db.session().scalar(
                select(func.count(SupplierProduct.id)).where(
                    SupplierProduct.supplier_id == supplier_id
                )
            )
        )


def audit(app, action: str) -> list[AuditEntry]:
    with app.app_context():
        return list(
            db.session().scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
            )
        )


def product_pages(double) -> list[str]:
    return [r["query"]["page"] for r in double.requests_log() if r["path"] == "/v1/products"]


def wait_for(app, run_id: int, timeout: float = 15) -> SupplierSyncRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            run = db.session().get(SupplierSyncRun, run_id)
            if run is not None and run.status != SyncStatus.RUNNING:
                return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} still running")


@pytest.fixture
def one_supplier(app, supplier):
    with app.app_context():
        made = make_supplier(db.session(), "Roastery Supplies GmbH")
        db.session().commit()
        return made


def test_the_job_syncs_every_page_and_records_a_job_run(app, auth, client, supplier, one_supplier):
    result = app.test_cli_runner().invoke(args=["suppliers", "sync"])
    assert result.exit_code == 0, result.output
    assert "synced 180 products in 4 pages" in result.output
    assert "scanned=1 acted=1 errors=0" in result.output
    [run] = runs(app)
    assert (run.status, run.pages_done, run.pages_total, run.items_synced) == (
        SyncStatus.SUCCEEDED,
        4,
        4,
        180,
    )
    assert products(app, one_supplier.id) == 180
    [job] = job_runs(app)
    assert job.status == JobStatus.SUCCEEDED and (job.scanned, job.acted) == (1, 1)
    auth.as_role("support")
    jobs_page = client.get("/ops/jobs").get_data(as_text=True)
    row = jobs_page[jobs_page.index('id="row-job-supplier-sync"') :]
    assert "on time" in row[: row.index("</tr>")]


def test_a_failed_page_fails_the_run_and_the_job_with_its_error(
    app, auth, client, supplier, one_supplier
):
    supplier.add_fault(path_prefix="/v1/products", page=3, status=502)
    before = SUPPLIER_SYNC_FAILURES._value.get()
    result = app.test_cli_runner().invoke(args=["suppliers", "sync"])
    assert result.exit_code == 0, result.output
    assert "errors=1" in result.output
    [run] = runs(app)
    assert run.status == SyncStatus.FAILED
    assert (run.pages_done, run.failed_page, run.items_synced, run.retryable) == (2, 3, 100, True)
    assert run.error == "HTTP 502 from the supplier API: injected fault on page 3 of 4"
    assert products(app, one_supplier.id) == 100  # pages 1 and 2 stay stored
    assert SUPPLIER_SYNC_FAILURES._value.get() == before + 1
    [job] = job_runs(app)
    assert job.status == JobStatus.FAILED and job.errors == 1
    assert job.last_error == f"Roastery Supplies GmbH: {run.error}"
    auth.as_role("support")
    jobs_page = client.get("/ops/jobs").get_data(as_text=True)
    row = jobs_page[jobs_page.index('id="row-job-supplier-sync"') :]
    row = row[: row.index("</tr>")]
    assert "failing" in row and "outcome-failed" in row and "page 3 of 4" in row
    queue = client.get("/suppliers").get_data(as_text=True)
    assert f"row-supplier_sync_run-{run.id}" in queue and "page 3 of 4" in queue


def test_a_full_sync_takes_over_older_failed_runs(app, supplier, one_supplier):
    with app.app_context():
        old = make_failed_run(db.session(), one_supplier)
        db.session().commit()
    assert app.test_cli_runner().invoke(args=["suppliers", "sync"]).exit_code == 0
    old_run, new_run = runs(app)
    assert old_run.id == old.id and old_run.superseded_by_id == new_run.id
    assert new_run.status == SyncStatus.SUCCEEDED


def test_dry_run_writes_and_sends_nothing(app, supplier, one_supplier):
    with app.app_context():
        make_failed_run(db.session(), one_supplier)
        make_waiting_order(db.session(), one_supplier)
        db.session().commit()
    result = app.test_cli_runner().invoke(args=["suppliers", "sync", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would sync the catalogue from page 1 (takes over failed run" in result.output
    assert "would forward to its supplier" in result.output and "(dry run)" in result.output
    assert supplier.requests_log() == [] and job_runs(app) == []
    assert len(runs(app)) == 1


def test_the_job_forwards_waiting_orders_once(app, supplier, one_supplier):
    with app.app_context():
        s = db.session()
        due = make_waiting_order(s, one_supplier).external_id
        fresh = make_waiting_order(s, one_supplier, updated_at=utcnow()).external_id  # shop's turn
        s.commit()
    for _ in range(2):
        assert app.test_cli_runner().invoke(args=["suppliers", "sync"]).exit_code == 0
    # This test's two orders only: orders other tests committed may be waiting too.
    orders = [o for o in supplier.orders() if o["reference"] in (due, fresh)]
    assert len(orders) == 1, orders
    [sent] = orders
    assert sent["reference"] == due
    with app.app_context():
        s = db.session()
        assert s.scalar(select(Order).where(Order.external_id == due)).supplier_order_ref
        assert (
            s.scalar(select(Order).where(Order.external_id == fresh)).supplier_forwarded_at is None
        )
    [entry] = audit(app, "orders:supplier:forward")
    assert entry.outcome == "success" and entry.actor_sub == "system:supplier-sync"
    assert entry.target_id == due and entry.details["extra"]["supplier_ref"] == sent["id"]


def test_the_job_stops_forwarding_to_an_unavailable_supplier(app, supplier, one_supplier):
    with app.app_context():
        s = db.session()
        for _ in range(3):
            make_waiting_order(s, one_supplier)
        s.commit()
    supplier.add_fault(path_prefix="/v1/orders", status=503, count=10)
    result = app.test_cli_runner().invoke(args=["suppliers", "sync"])
    assert result.exit_code == 0
    assert "left for a person (its supplier is unavailable)" in result.output
    posts = [r for r in supplier.requests_log() if r["path"] == "/v1/orders"]
    assert len(posts) == 1  # not one timeout per order while the supplier is down
    [job] = job_runs(app)
    assert job.status == JobStatus.FAILED and "HTTP 503" in (job.last_error or "")
    [failed] = audit(app, "orders:supplier:forward")
    assert failed.outcome == "failed" and failed.actor_sub == "system:supplier-sync"


def test_an_interrupted_run_is_marked_failed_and_retryable(app, supplier, one_supplier):
    with app.app_context():
        make_failed_run(
            db.session(),
            one_supplier,
            status=SyncStatus.RUNNING,
            started_at=utcnow() - timedelta(minutes=10),
            failed_page=None,
            error=None,
        )
        db.session().commit()
    result = app.test_cli_runner().invoke(args=["suppliers", "sync"])
    assert "marked interrupted at page 3" in result.output
    interrupted, full = runs(app)
    assert interrupted.status == SyncStatus.FAILED and interrupted.retryable
    assert "interrupted" in (interrupted.error or "")
    assert interrupted.superseded_by_id == full.id


@pytest.mark.slow
def test_two_sync_jobs_at_once_one_runs_and_the_other_says_it_skipped(committed_app, supplier):
    with committed_app.app_context():
        make_supplier(db.session(), "Roastery Supplies GmbH")
        db.session().commit()
    supplier.add_fault(path_prefix="/v1/products", delay=0.5, count=4)  # a slow supplier
    barrier = threading.Barrier(2)
    reports = []

    def run() -> None:
        with committed_app.app_context():
            barrier.wait()
            try:
                reports.append(execute(db.session(), "supplier-sync", trigger="test"))
            except JobSkipped as exc:
                reports.append(str(exc))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    skipped = [r for r in reports if isinstance(r, str)]
    assert skipped == ["skipped: another run of supplier-sync is in progress"], reports
    assert len(job_runs(committed_app)) == 1 and len(runs(committed_app)) == 1
    assert product_pages(supplier) == ["1", "2", "3", "4"]


@pytest.fixture
def admin(committed_app, idp):
    client = committed_app.test_client()
    AuthActions(client, idp).as_role("admin")
    return client


@pytest.fixture
def failed_run(committed_app, supplier):
    with committed_app.app_context():
        run = make_failed_run(db.session(), make_supplier(db.session(), "Roastery Supplies GmbH"))
        db.session().commit()
        return run


def test_retry_resumes_a_failed_sync_from_the_page_where_it_stopped(
    committed_app, admin, supplier, failed_run, start_worker
):
    """Retry sync enqueues the resume; a worker process fetches only pages 3 and 4."""
    start_worker()
    resp = submit(admin, "suppliers:sync:retry", str(failed_run.id), reason="Supplier API is back")
    assert resp.status_code == 303
    origin, resumed = runs(committed_app)
    assert origin.superseded_by_id == resumed.id and resumed.resumed_from_id == origin.id
    done = wait_for(committed_app, resumed.id)
    assert done.status == SyncStatus.SUCCEEDED
    assert (done.start_page, done.pages_done, done.items_synced) == (3, 4, 80)
    assert product_pages(supplier) == ["3", "4"]  # pages 1 and 2 were not fetched again
    assert products(committed_app, origin.supplier_id) == 80
    started, finished = (
        audit(committed_app, "suppliers:sync:retry"),
        audit(committed_app, "suppliers:sync:run"),
    )
    assert [e.outcome for e in started] == ["success"] and started[0].actor_roles == ["admin"]
    [result] = finished
    assert result.outcome == "success" and result.actor_email == "admin@example.test"
    assert result.target_id == str(origin.id)
    assert result.details["extra"]["catalog_version"] == done.catalog_version
    page = admin.get(f"/suppliers/runs/{origin.id}").get_data(as_text=True)
    assert "suppliers:sync:retry" in page and "suppliers:sync:run" in page
    assert f"row-supplier_sync_run-{origin.id}" not in admin.get("/suppliers").get_data(
        as_text=True
    )


def test_a_retry_that_fails_again_is_audited_failed_and_can_be_retried(
    committed_app, admin, supplier, failed_run, start_worker
):
    start_worker()
    supplier.add_fault(path_prefix="/v1/products", page=4, status=503)
    assert submit(admin, "suppliers:sync:retry", str(failed_run.id)).status_code == 303
    _, resumed = runs(committed_app)
    done = wait_for(committed_app, resumed.id)
    assert done.status == SyncStatus.FAILED and (done.pages_done, done.failed_page) == (3, 4)
    [result] = audit(committed_app, "suppliers:sync:run")
    assert result.outcome == "failed" and "HTTP 503" in result.details["extra"]["error"]
    queue = admin.get("/suppliers").get_data(as_text=True)
    assert f"/actions/suppliers:sync:retry/{done.id}" in queue  # the next retry
    assert f"/actions/suppliers:sync:retry/{failed_run.id}" not in queue
    assert submit(admin, "suppliers:sync:retry", str(done.id)).status_code == 303
    last = wait_for(committed_app, runs(committed_app)[-1].id)
    assert last.status == SyncStatus.SUCCEEDED and last.start_page == 4
    assert product_pages(supplier) == ["3", "4", "4"]


def test_a_retry_of_a_run_already_taken_over_is_409(app, auth, client, supplier):
    with app.app_context():
        s = db.session()
        run = make_failed_run(s)
        newer = make_failed_run(s, status=SyncStatus.SUCCEEDED)
        run.superseded_by_id = newer.id
        s.commit()
    auth.as_role("admin")
    crafted = {"csrf_token": auth.csrf_token(), "idempotency_key": "crafted-retry-00001"}
    resp = submit(client, "suppliers:sync:retry", str(run.id), form=crafted)
    assert resp.status_code == 409 and "has taken over" in resp.get_data(as_text=True)
    assert supplier.requests_log() == []
