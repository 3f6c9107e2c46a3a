"""Scheduled jobs: their schedules, their run records, and which are late."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from console.db import utcnow
from console.ops.models import JobRun, JobStatus


@dataclass(frozen=True)
class JobSpec:
    name: str
    title: str
    every: timedelta
    command: str

    @property
    def late_after(self) -> timedelta:
        # Dead-man: one missed run is tolerated, two are late.
        return self.every * 2


JOBS: dict[str, JobSpec] = {
    spec.name: spec
    for spec in (
        JobSpec(
            "payouts-auto-release",
            "Payout auto-release",
            timedelta(minutes=10),
            "payouts auto-release",
        ),
        JobSpec("payouts-resume", "Money movement resume", timedelta(minutes=10), "payouts resume"),
        JobSpec(
            "invoices-retry-stuck",
            "Invoice retry",
            timedelta(minutes=15),
            "invoices retry-stuck",
        ),
        JobSpec(
            "coupons-expire-reservations",
            "Coupon reservation expiry",
            timedelta(minutes=15),
            "coupons expire-reservations",
        ),
        JobSpec("reconcile", "Stripe reconciliation", timedelta(hours=24), "reconcile run"),
        JobSpec("supplier-sync", "Supplier sync", timedelta(hours=1), "suppliers sync"),
    )
}


@dataclass
class JobHealth:
    spec: JobSpec
    last_run: JobRun | None
    last_success_at: datetime | None
    late: bool

    @property
    def due_by(self) -> datetime | None:
        if self.last_success_at is None:
            return None
        return self.last_success_at + self.spec.late_after


def job_health(s: Session, now: datetime) -> list[JobHealth]:
    """Last run and last success of every scheduled job (one query each)."""
    last_success: dict[str, datetime | None] = {
        job: finished
        for job, finished in s.execute(
            select(JobRun.job, func.max(JobRun.finished_at))
            .where(JobRun.status == JobStatus.SUCCEEDED)
            .group_by(JobRun.job)
        )
    }
    latest_ids = select(func.max(JobRun.id)).group_by(JobRun.job).scalar_subquery()
    last_runs = {r.job: r for r in s.scalars(select(JobRun).where(JobRun.id.in_(latest_ids)))}
    out = []
    for spec in JOBS.values():
        success = last_success.get(spec.name)
        if success is not None and success.tzinfo is None:
            from datetime import UTC

            success = success.replace(tzinfo=UTC)
        late = success is None or now - success > spec.late_after
        out.append(JobHealth(spec, last_runs.get(spec.name), success, late))
    return out


def late_jobs(s: Session, now: datetime) -> list[JobHealth]:
    return [h for h in job_health(s, now) if h.late]


@contextmanager
def job_run(s: Session, job: str) -> Iterator[JobRun]:
    """Record a job run: scanned/acted/errors as the job counts them."""
    run = JobRun(job=job, status=JobStatus.RUNNING)
    s.add(run)
    s.commit()
    try:
        yield run
    except Exception as exc:
        s.rollback()
        run.status = JobStatus.FAILED
        run.errors += 1
        run.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        run.finished_at = utcnow()
        s.commit()
        raise
    else:
        run.status = JobStatus.SUCCEEDED if run.errors == 0 else JobStatus.FAILED
        run.finished_at = utcnow()
        s.commit()
