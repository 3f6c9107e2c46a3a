"""Run now: a scheduled job queued for the workers at once (admin, audited)."""

from __future__ import annotations

import time
from typing import Any

from flask import url_for
from sqlalchemy.orm import Session

from console.actions.framework import Action, ActionContext, ActionError, Outcome, declare
from console.db import utcnow
from console.jobs.engine import AlreadyQueued, enqueue
from console.jobs.tasks import job_task
from console.ops.jobs import JOBS, JobHealth, job_health
from console.security.permissions import Permission


def load_job(s: Session, name: str, lock: bool) -> JobHealth | None:
    """The job's health now (a job is not a row: "Run now" queues, it locks nothing)."""
    if name not in JOBS:
        return None
    health = {h.spec.name: h for h in job_health(s, utcnow(), history=True)}
    return health[name]


def _precondition(h: JobHealth) -> str | None:
    if h.waiting:
        return "a run of this job is already waiting for a worker."
    return None


def _run_now_effect(ctx: ActionContext, h: JobHealth) -> Outcome:
    name = h.spec.name
    try:
        job_id = enqueue(
            ctx.session,
            job_task(name),
            queue=h.spec.queue,
            lock=job_task(name),
            queueing_lock=job_task(name),
            timestamp=int(time.time()),
            trigger=f"manual:{ctx.user.email or ctx.user.sub}",
        )
    except AlreadyQueued:
        raise ActionError("A run of this job is already waiting for a worker.", 409) from None
    return Outcome(
        f"{h.spec.title} is queued (job {job_id}); a worker runs it within seconds and this "
        "page shows the result.",
        {"job_id": job_id},
    )


def _fresh(h: JobHealth) -> JobHealth:
    """The row after the action: the job now waits in the queue."""
    from console import db

    return load_job(db.session(), h.spec.name, False) or h


def _snapshot(h: JobHealth) -> dict[str, Any]:
    last = h.last_run
    return {
        "late": h.late,
        "waiting": h.waiting,
        "last_run": last.id if last else None,
        "last_status": last.status.value if last else None,
    }


run_now = declare(
    Action[JobHealth](
        name="jobs:job:run",
        label="Run now",
        permission=Permission.JOBS_JOB_RUN,
        target_type="job",
        load=load_job,
        precondition=_precondition,
        describe=lambda h: [
            ("Job", f"{h.spec.title} ({h.spec.name})"),
            ("Schedule", f"{h.spec.schedule_text} (cron {h.spec.cron})"),
            ("Command", f"flask --app wsgi {h.spec.command}"),
            (
                "Effect",
                "Queues one run for the job workers now, besides the schedule. It runs the "
                "same code as the schedule and the command; a run already in progress makes "
                "this one skip.",
            ),
        ],
        effect=_run_now_effect,
        snapshot=_snapshot,
        return_url=lambda h: url_for("ops.jobs"),
        row=lambda h: ("ops/jobs.html", "job_row", {"h": _fresh(h), "now": utcnow()}),
        reason_help="Why now (e.g. the job is late after the outage; the runbook says so).",
    )
)
