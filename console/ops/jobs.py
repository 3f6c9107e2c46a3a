"""Scheduled jobs: one declaration each, run by the engine, cron or a person.

A job is declared once with `scheduled(...)` next to the service it runs (its
name, title, schedule and CLI command) and its body: `(session, dry_run) ->
JobReport`. The same body runs from the job engine's schedule (console/jobs/),
from its CLI command, and from "Run now" on /ops/jobs, always through
`execute`:

- a PostgreSQL advisory lock per job: a second copy started meanwhile (a cron
  line beside the engine, two workers) is skipped with a one-line message;
- a JobRun row (scanned / acted / errors / last error), the opsHealth record
  of runbook 003, from which /ops/jobs, /healthz and /metrics read lateness.
"""

from __future__ import annotations

import itertools
import logging
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from console.db import utcnow
from console.ops.models import JobRun, JobStatus

log = logging.getLogger(__name__)


@dataclass
class JobReport:
    """What a job body did, in the words of the opsHealth record."""

    scanned: int = 0
    acted: int = 0
    errors: int = 0
    last_error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    """One line per item for the CLI (`payout P-1: released`)."""

    def summary(self, *, dry_run: bool = False) -> str:
        if dry_run:
            return f"scanned={self.scanned} (dry run)"
        extra = "".join(f" {k}={v}" for k, v in self.details.items() if isinstance(v, int | str))
        return f"scanned={self.scanned} acted={self.acted} errors={self.errors}{extra}"


JobBody = Callable[[Session, bool], JobReport]


@dataclass(frozen=True)
class JobSpec:
    name: str
    title: str
    every: timedelta
    cron: str
    command: str
    body: JobBody
    queue: str = "default"

    @property
    def scheduled(self) -> bool:
        return self.cron != "off"

    @property
    def late_after(self) -> timedelta:
        # Dead-man: one missed run is tolerated, two are late.
        return self.every * 2

    @property
    def schedule_text(self) -> str:
        if not self.scheduled:
            return "off (JOB_SCHEDULES)"
        if self.every < timedelta(minutes=1):
            return f"every {int(self.every.total_seconds())} s"
        minutes = int(self.every.total_seconds() // 60)
        if minutes % (24 * 60) == 0:
            days = minutes // (24 * 60)
            return "daily" if days == 1 else f"every {days} days"
        if minutes % 60 == 0:
            hours = minutes // 60
            return "hourly" if hours == 1 else f"every {hours} h"
        return f"every {minutes} min"


JOBS: dict[str, JobSpec] = {}
"""Every declared job with the schedule in its code (the runbooks' intervals)."""


def effective_jobs(overrides: dict[str, str] | None = None) -> dict[str, JobSpec]:
    """The jobs with JOB_SCHEDULES applied: another cron (its interval derived), or off."""
    if overrides is None:
        from flask import current_app, has_app_context

        overrides = current_app.config["SETTINGS"].job_schedules if has_app_context() else {}
    unknown = set(overrides) - set(JOBS)
    if unknown:
        raise ValueError(f"JOB_SCHEDULES names unknown jobs: {', '.join(sorted(unknown))}")
    out = {}
    for name, spec in JOBS.items():
        cron = overrides.get(name)
        if cron is None:
            out[name] = spec
        elif cron == "off":
            out[name] = replace(spec, cron="off")
        else:
            out[name] = replace(spec, cron=cron, every=cron_interval(cron))
    return out


def cron_interval(cron: str) -> timedelta:
    """The longest gap between two ticks of `cron` over the next few (for lateness)."""
    from croniter import croniter

    it = croniter(cron, datetime.now(UTC))
    ticks: list[datetime] = [it.get_next(datetime) for _ in range(6)]
    return max(b - a for a, b in itertools.pairwise(ticks))


def scheduled(
    name: str,
    *,
    title: str,
    every: timedelta,
    cron: str,
    command: str,
    queue: str = "default",
) -> Callable[[JobBody], JobBody]:
    """Declare a scheduled job; the decorated function is its body."""

    def register(body: JobBody) -> JobBody:
        if name in JOBS and JOBS[name].body is not body:
            raise ValueError(f"job {name} declared twice")
        JOBS[name] = JobSpec(name, title, every, cron, command, body, queue)
        return body

    return register


class JobSkipped(RuntimeError):
    """Another run of the same job holds its lock; this one did nothing."""


JOB_LOCKS = 10_000
"""The advisory-lock class of scheduled jobs (the second key is the job's)."""


def _lock_key(job: str) -> int:
    return zlib.crc32(job.encode()) - 2**31  # an int4, as pg_try_advisory_lock(int, int) wants


@contextmanager
def job_lock(s: Session, job: str) -> Iterator[None]:
    """Hold the job's advisory lock for the whole run, or raise JobSkipped."""
    from console.db import advisory_lock

    with advisory_lock(s, JOB_LOCKS, _lock_key(job)) as got:
        if not got:
            raise JobSkipped(f"skipped: another run of {job} is in progress")
        yield


@contextmanager
def job_run(
    s: Session, job: str, *, trigger: str = "cli", tick: int | None = None
) -> Iterator[JobRun]:
    """Record a job run: scanned/acted/errors as the job counts them.

    The caller holds the job's lock, so a run still marked `running` is one
    whose process stopped: it is closed as failed first.
    """
    s.execute(
        update(JobRun)
        .where(JobRun.job == job, JobRun.status == JobStatus.RUNNING)
        .values(
            status=JobStatus.FAILED,
            finished_at=utcnow(),
            errors=JobRun.errors + 1,
            last_error="abandoned: the process running it stopped before it finished",
        )
    )
    details: dict[str, Any] = {"trigger": trigger}
    if tick is not None:
        details["tick"] = tick
    run = JobRun(job=job, status=JobStatus.RUNNING, details=details)
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


def execute(
    s: Session, name: str, *, trigger: str, dry_run: bool = False, tick: int | None = None
) -> JobReport:
    """Run a declared job once: locked, recorded, timed. Raises JobSkipped.

    `tick` is the schedule's timestamp when the engine's schedule started it.
    """
    spec = JOBS[name]
    if dry_run:
        report = spec.body(s, True)
        s.rollback()
        return report
    started = time.monotonic()
    with job_lock(s, name), job_run(s, name, trigger=trigger, tick=tick) as run:
        report = spec.body(s, False)
        run.scanned, run.acted, run.errors = report.scanned, report.acted, report.errors
        run.last_error = report.last_error[:2000] if report.last_error else None
        run.details = {**run.details, **report.details}
    log.info(
        "job %s %s: %s in %.2fs",
        name,
        run.status.value,
        report.summary(),
        time.monotonic() - started,
        extra={"job": name, "trigger": trigger, "status": run.status.value},
    )
    return report


@dataclass
class JobHealth:
    spec: JobSpec
    last_run: JobRun | None
    last_success_at: datetime | None
    late: bool
    recent: list[JobRun] = field(default_factory=list)
    waiting: int = 0
    oldest_waiting_at: datetime | None = None

    @property
    def due_by(self) -> datetime | None:
        if self.last_success_at is None:
            return None
        return self.last_success_at + self.spec.late_after

    @property
    def duration(self) -> timedelta | None:
        run = self.last_run
        if run is None or run.finished_at is None:
            return None
        return run.finished_at - run.started_at

    def chart(self, height: int = 24, bar: int = 6, gap: int = 2) -> dict[str, Any]:
        """Bars for the last runs (oldest first): height by duration, class by status."""
        runs = self.recent
        seconds = [
            (r.finished_at - r.started_at).total_seconds() if r.finished_at else 0.0 for r in runs
        ]
        longest = max(seconds, default=0.0) or 1.0
        bars = []
        for i, (r, s) in enumerate(zip(runs, seconds, strict=True)):
            h = max(2, round((height - 2) * s / longest)) if r.finished_at else height - 2
            bars.append(
                {
                    "x": i * (bar + gap),
                    "y": height - h,
                    "w": bar,
                    "h": h,
                    "status": r.status.value,
                    "title": f"{r.started_at:%Y-%m-%d %H:%M} UTC: {r.status.value}, "
                    f"{s:.1f} s, scanned {r.scanned}, acted {r.acted}, errors {r.errors}",
                }
            )
        failed = sum(1 for r in runs if r.status == JobStatus.FAILED)
        return {
            "width": max(len(runs) * (bar + gap) - gap, 1),
            "height": height,
            "bars": bars,
            "label": f"Last {len(runs)} runs: {len(runs) - failed} without error, {failed} failed"
            if runs
            else "No runs yet",
        }


HISTORY = 20


def job_health(s: Session, now: datetime, *, history: bool = False) -> list[JobHealth]:
    """Last run, last success and lateness of every job (one query each, not per job)."""
    jobs = effective_jobs()
    # One index descent per job (ix_job_runs_job_succeeded, ix_job_runs_job_id) through
    # LATERAL over the known job names: a GROUP BY over job_runs reads years of runs.
    names = list(jobs)
    last_success: dict[str, datetime | None] = {
        job: finished
        for job, finished in s.execute(
            text(
                "SELECT j.job, r.finished_at FROM unnest(CAST(:jobs AS text[])) AS j(job) "
                "CROSS JOIN LATERAL (SELECT finished_at FROM job_runs "
                "WHERE job_runs.job = j.job AND status = 'succeeded' "
                "AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT 1) AS r"
            ),
            {"jobs": names},
        )
    }
    last_runs = {
        r.job: r
        for r in s.scalars(
            select(JobRun)
            .from_statement(
                text(
                    "SELECT r.* FROM unnest(CAST(:jobs AS text[])) AS j(job) "
                    "CROSS JOIN LATERAL (SELECT * FROM job_runs WHERE job_runs.job = j.job "
                    "ORDER BY id DESC LIMIT 1) AS r"
                )
            )
            .params(jobs=names)
        )
    }
    recent: dict[str, list[JobRun]] = {}
    queue: dict[str, tuple[int, datetime | None]] = {}
    if history:
        for run in s.scalars(
            select(JobRun)
            .from_statement(
                text(
                    "SELECT r.* FROM unnest(CAST(:jobs AS text[])) AS j(job) "
                    "CROSS JOIN LATERAL (SELECT * FROM job_runs WHERE job_runs.job = j.job "
                    "ORDER BY started_at DESC, id DESC LIMIT :n) AS r"
                )
            )
            .params(jobs=list(jobs), n=HISTORY)
        ):
            recent.setdefault(run.job, []).append(run)
        queue = waiting_jobs(s)
    out = []
    for spec in jobs.values():
        success = last_success.get(spec.name)
        if success is not None and success.tzinfo is None:
            success = success.replace(tzinfo=UTC)
        late = spec.scheduled and (success is None or now - success > spec.late_after)
        waiting, oldest = queue.get(f"job:{spec.name}", (0, None))
        out.append(
            JobHealth(
                spec,
                last_runs.get(spec.name),
                success,
                late,
                sorted(recent.get(spec.name, []), key=lambda r: (r.started_at, r.id)),
                waiting,
                oldest,
            )
        )
    return out


def waiting_jobs(s: Session) -> dict[str, tuple[int, datetime | None]]:
    """Jobs waiting in the engine's queue, per task: (count, oldest deferral time)."""
    rows = s.execute(
        text(
            "SELECT j.task_name, count(*), min(e.at) FROM procrastinate_jobs j "
            "LEFT JOIN procrastinate_events e ON e.job_id = j.id AND e.type = 'deferred' "
            "WHERE j.status = 'todo' GROUP BY j.task_name"
        )
    )
    return {task: (int(n), oldest) for task, n, oldest in rows}


def late_jobs(s: Session, now: datetime) -> list[JobHealth]:
    return [h for h in job_health(s, now) if h.late]
