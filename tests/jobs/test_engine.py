"""The job engine with real worker processes on PostgreSQL.

Each test states the figure it holds: one transfer per payout after a
SIGKILL, each schedule tick run once by two workers, nothing enqueued by a
rolled-back change, a late job run from /ops/jobs.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from console import db
from console.db import utcnow
from console.jobs.engine import AlreadyQueued, enqueue
from console.ops.jobs import JobSkipped, execute, job_lock
from console.ops.models import JobRun, JobStatus
from console.payouts.models import Approval, ApprovalStatus, SellerPayout
from console.reconciliation.models import ReconciliationRun, RunStatus
from tests.actions.helpers import confirm_form, submit
from tests.conftest import AuthActions, wait_for
from tests.factories import make_payout

pytestmark = pytest.mark.slow


def queued(app, task: str | None = None) -> int:
    with app.app_context():
        sql = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'"
        if task:
            sql += " AND task_name = :task"
        return int(db.session().execute(text(sql), {"task": task}).scalar() or 0)


def test_a_rolled_back_change_enqueues_nothing_a_committed_one_exactly_one_job(committed_app):
    """0 jobs after a rollback, 1 after the commit: the job is part of the transaction."""
    with committed_app.app_context():
        s = db.session()
        enqueue(s, "payouts.release_approval", queue="money", approval_id=1, actor={})
        s.rollback()
        assert queued(committed_app) == 0
        enqueue(s, "payouts.release_approval", queue="money", approval_id=1, actor={})
        s.commit()
    assert queued(committed_app, "payouts.release_approval") == 1


def test_a_queueing_lock_refuses_a_second_waiting_job_and_keeps_the_transaction(committed_app):
    with committed_app.app_context():
        s = db.session()
        enqueue(s, "job:reconcile", queueing_lock="job:reconcile", timestamp=1)
        with pytest.raises(AlreadyQueued):
            enqueue(s, "job:reconcile", queueing_lock="job:reconcile", timestamp=2)
        s.commit()  # the savepoint kept the first job and the transaction usable
    assert queued(committed_app, "job:reconcile") == 1


def _bulk_request(committed_app, idp, stripe_client, n: int):
    with committed_app.app_context():
        s = db.session()
        payouts = [make_payout(s, amount=3000 + i) for i in range(n)]
        s.commit()
    for p in payouts:
        stripe_client.v1.accounts.create({"type": "express", "id": p.destination_account})
    requester = committed_app.test_client()
    AuthActions(requester, idp).as_role("admin")
    resp = submit(requester, "payouts:selection:request", "all", reason="Bulk release, ticket 7")
    assert resp.status_code == 303
    with committed_app.app_context():
        approval_id = db.session().scalar(select(Approval.id).order_by(Approval.id.desc()))
    approver = committed_app.test_client()
    AuthActions(approver, idp).as_role("admin2")
    return payouts, approval_id, approver


def test_a_worker_killed_mid_release_is_replaced_and_every_payout_moves_once(
    committed_app, idp, stripe, stripe_client, start_worker
):
    """SIGKILL during a 12-row bulk release: another worker finishes; 1 transfer per payout."""
    payouts, approval_id, approver = _bulk_request(committed_app, idp, stripe_client, 12)
    # A slow Stripe (0.4 s per transfer) so the kill lands in the middle.
    stripe.add_fault(path_prefix="/v1/transfers", status=0, delay=0.4, count=100)
    first = start_worker()
    resp = submit(approver, "payouts:release:approve", str(approval_id), reason="Approved, bulk")
    assert resp.status_code == 303

    def released() -> int:
        with committed_app.app_context():
            return int(
                db.session().scalar(
                    select(func.count(SellerPayout.id)).where(
                        SellerPayout.stripe_transfer_id.is_not(None)
                    )
                )
                or 0
            )

    assert wait_for(lambda: released() >= 3, timeout=30)
    first.kill()
    done_before = released()
    assert done_before < 12, "the kill came too late to prove anything"
    second = start_worker()
    with committed_app.app_context():

        def executed() -> bool:
            db.session().expire_all()
            a = db.session().get(Approval, approval_id)
            return a.status == ApprovalStatus.EXECUTED

        assert wait_for(executed, timeout=90), "the second worker did not finish the release"
    stripe.clear_faults()
    for p in payouts:
        transfers = [
            t
            for t in stripe_client.v1.transfers.list({"limit": 100}).data
            if (t.to_dict().get("metadata") or {}).get("payout_id") == p.external_id
        ]
        assert len(transfers) == 1, (p.external_id, len(transfers))
    with committed_app.app_context():
        rows = db.session().scalars(select(SellerPayout)).all()
        assert {r.stripe_transfer_id is not None for r in rows} == {True}
        assert len({r.stripe_transfer_id for r in rows}) == 12
    # The stalled-job check that rescued the release ran, but kept quiet about
    # its every-5-seconds routine: the log shows the jobs, not the housekeeping.
    log = second.log_path.read_text()
    assert "payouts.release_approval" in log
    assert "Starting job engine.retry_stalled" not in log
    assert "Periodic job engine.retry_stalled" not in log


def test_two_workers_and_a_schedule_run_each_tick_exactly_once(committed_app, start_worker, stripe):
    """Two workers, auto-release every 2 s: 5+ ticks, each run exactly once (none twice)."""
    from console.ops.jobs import JOBS

    every_other_off = ";".join(f"{name}=off" for name in JOBS if name != "payouts-auto-release")
    schedules = f"payouts-auto-release=* * * * * */2;{every_other_off}"
    start_worker(schedule=True, JOB_SCHEDULES=schedules)
    start_worker(schedule=True, JOB_SCHEDULES=schedules)

    def runs() -> int:
        with committed_app.app_context():
            return int(
                db.session().scalar(
                    select(func.count(JobRun.id)).where(
                        JobRun.job == "payouts-auto-release",
                        JobRun.status == JobStatus.SUCCEEDED,
                    )
                )
                or 0
            )

    assert wait_for(lambda: runs() >= 5, timeout=40)
    with committed_app.app_context():
        recorded = (
            db.session().scalars(select(JobRun).where(JobRun.job == "payouts-auto-release")).all()
        )
    ticks = Counter(r.details.get("tick") for r in recorded)
    assert None not in ticks  # every run came from the schedule
    assert max(ticks.values()) == 1, ticks  # no tick ran twice, with two workers deferring
    assert len(ticks) >= 5


def test_a_late_job_shows_late_and_run_now_brings_it_back(committed_app, idp, start_worker, stripe):
    """A job last successful 3 days ago is late; Run now (admin) queues it; a worker runs it."""
    with committed_app.app_context():
        s = db.session()
        long_ago = utcnow() - timedelta(days=3)
        s.add(
            JobRun(
                job="coupons-expire-reservations",
                status=JobStatus.SUCCEEDED,
                started_at=long_ago,
                finished_at=long_ago,
            )
        )
        s.commit()
    admin = committed_app.test_client()
    AuthActions(admin, idp).as_role("admin")
    page = admin.get("/ops/jobs").get_data(as_text=True)
    row = page.split('id="row-job-coupons-expire-reservations"')[1].split("</tr>")[0]
    assert "late" in row and "Run now" in row
    other_tab = confirm_form(admin, "jobs:job:run", "coupons-expire-reservations")
    resp = submit(admin, "jobs:job:run", "coupons-expire-reservations", reason="Late after outage")
    assert resp.status_code == 303
    assert queued(committed_app, "job:coupons-expire-reservations") == 1
    # Queued already: the other tab's Run now is refused (stale), nothing queued twice.
    again = submit(
        admin,
        "jobs:job:run",
        "coupons-expire-reservations",
        form=other_tab,
        reason="Pressed again, other tab",
    )
    assert again.status_code == 409
    assert queued(committed_app, "job:coupons-expire-reservations") == 1
    start_worker()

    def ran() -> bool:
        with committed_app.app_context():
            return bool(
                db.session().scalar(
                    select(func.count(JobRun.id)).where(
                        JobRun.job == "coupons-expire-reservations",
                        JobRun.started_at > utcnow() - timedelta(minutes=1),
                        JobRun.status == JobStatus.SUCCEEDED,
                    )
                )
            )

    assert wait_for(ran, timeout=30)
    page = admin.get("/ops/jobs").get_data(as_text=True)
    row = page.split('id="row-job-coupons-expire-reservations"')[1].split("</tr>")[0]
    assert "on time" in row and "manual:admin@example.test" in row


def test_a_second_copy_of_a_job_skips_while_the_first_holds_its_lock(committed_app):
    """Cron beside the engine: the second copy prints one line and does nothing."""
    with committed_app.app_context():
        s = db.session()
        with job_lock(s, "coupons-expire-reservations"):
            with pytest.raises(JobSkipped):
                execute(s, "coupons-expire-reservations", trigger="test")
            result = committed_app.test_cli_runner().invoke(args=["coupons", "expire-reservations"])
        assert result.exit_code == 0
        assert result.output.strip().startswith(
            "skipped: another run of coupons-expire-reservations is in progress; nothing was done"
        )
        assert len(result.output.strip().splitlines()) == 1
        assert "Traceback" not in result.output
        assert s.scalar(select(func.count(JobRun.id))) == 0
        # Free again: it runs and is recorded.
        execute(s, "coupons-expire-reservations", trigger="test")
        assert s.scalar(select(func.count(JobRun.id))) == 1


def test_a_run_whose_worker_died_is_closed_and_a_new_one_can_start(committed_app, idp):
    """A run 'running' with no heartbeat for 10 min no longer blocks; it is closed as failed."""
    with committed_app.app_context():
        s = db.session()
        dead = ReconciliationRun(
            filters={},
            status=RunStatus.RUNNING,
            started_by_sub="sub-admin-1",
            started_at=utcnow() - timedelta(minutes=30),
            heartbeat_at=utcnow() - timedelta(minutes=10),
        )
        s.add(dead)
        s.commit()
        dead_id = dead.id
    admin = committed_app.test_client()
    AuthActions(admin, idp).as_role("admin")
    resp = submit(admin, "reconciliation:run:start", "stripe", reason="The last run never ended")
    assert resp.status_code == 303
    with committed_app.app_context():
        s = db.session()
        old = s.get(ReconciliationRun, dead_id)
        assert old.status == RunStatus.FAILED and "abandoned" in old.error
        new = s.scalar(select(ReconciliationRun).where(ReconciliationRun.id != dead_id))
        assert new.status == RunStatus.RUNNING
    assert queued(committed_app, "reconciliation.run") == 1


def test_a_live_run_blocks_a_second_start(committed_app, idp):
    admin = committed_app.test_client()
    AuthActions(admin, idp).as_role("admin")
    form = confirm_form(admin, "reconciliation:run:start", "stripe")  # opened before it started
    with committed_app.app_context():
        s = db.session()
        s.add(
            ReconciliationRun(
                filters={}, status=RunStatus.RUNNING, started_at=utcnow(), heartbeat_at=utcnow()
            )
        )
        s.commit()
    page = admin.get("/actions/reconciliation:run:start/stripe").get_data(as_text=True)
    assert "still running" in page
    resp = submit(
        admin, "reconciliation:run:start", "stripe", form=form, reason="Start another one now"
    )
    assert resp.status_code == 409
    assert queued(committed_app) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("since", "yesterday"),
        ("until", "2026-13-40"),
        ("payment_intent", "ch_123"),
        ("since", "1900-01-01"),
    ],
)
def test_run_filters_are_checked_before_a_run_starts(app, auth, client, field, value):
    auth.as_role("admin")
    resp = submit(
        client, "reconciliation:run:start", "stripe", reason="Filtered run", **{field: value}
    )
    assert resp.status_code == 422
    with app.app_context():
        assert db.session().scalar(select(func.count(ReconciliationRun.id))) == 0
