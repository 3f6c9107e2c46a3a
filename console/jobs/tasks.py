"""The tasks workers run, by name (web processes enqueue them by these names).

- `job:<name>`: every scheduled job of `console.ops.jobs.JOBS`, on its cron
  schedule and for "Run now";
- `payouts.release_approval`: an approved release of a selection, row by row;
- `reconciliation.run`: a run started from the reconciliation page;
- `suppliers.resume_sync`: Retry sync of a failed supplier sync run;
- `integrations.deliver_now`: the shop's events an action just wrote;
- `webhooks.drain` (every second): the Stripe events intake stored, in
  batches, once each; `webhooks.process`: one event's retry after a failure;
- `engine.retry_stalled`: puts the jobs of dead workers back in the queue.
"""

from __future__ import annotations

import logging
from typing import Any

from procrastinate import RetryStrategy

from console.jobs.engine import engine, stalled_seconds, task_context, timed
from console.ops.jobs import JobSkipped, JobSpec, effective_jobs, execute

log = logging.getLogger(__name__)

RELEASE_APPROVAL = "payouts.release_approval"
RECONCILIATION_RUN = "reconciliation.run"
SUPPLIER_SYNC_RESUME = "suppliers.resume_sync"
DELIVER_NOW = "integrations.deliver_now"
PROCESS_WEBHOOKS = "webhooks.process"
DRAIN_WEBHOOKS = "webhooks.drain"


def job_task(name: str) -> str:
    return f"job:{name}"


# Bulk releases and runs are resumable, so a failure is retried with backoff
# (2, 4, 8, ... s); a SIGKILLed worker's job comes back through retry_stalled.
RESUMABLE = RetryStrategy(max_attempts=8, exponential_wait=2)


@engine.task(name=RELEASE_APPROVAL, queue="money", retry=RESUMABLE)
@timed
def release_approval(approval_id: int, actor: dict[str, Any]) -> dict[str, int]:
    """Transfer each payout of an approved release; rows already done are skipped."""
    from console.payments.gateway import gateway
    from console.payouts.release import execute_approval

    with task_context() as s:
        return execute_approval(s, gateway(), approval_id, actor=actor)


@engine.task(name=RECONCILIATION_RUN, queue="reconcile", retry=RESUMABLE)
@timed
def reconciliation_run(run_id: int) -> None:
    """Execute a reconciliation run the page started (or take over a dead worker's)."""
    from console.payments.gateway import gateway
    from console.reconciliation.services import finish_run

    with task_context() as s:
        finish_run(s, gateway(), run_id)


@engine.task(name=SUPPLIER_SYNC_RESUME, retry=RESUMABLE)
@timed
def supplier_sync_resume(run_id: int, actor: dict[str, Any]) -> None:
    """Resume a failed supplier sync from the page where it stopped (Retry sync)."""
    from console.suppliers.gateway import supplier_gateway
    from console.suppliers.services import resume_sync

    with task_context() as s:
        resume_sync(s, supplier_gateway(), run_id, actor=actor)


@engine.task(name=DELIVER_NOW, queue="default")
@timed
def deliver_now(**_: Any) -> None:
    """Send the deliveries an action just wrote (retries wait for the minute job)."""
    from console.integrations.delivery import deliver_due

    with task_context() as s:
        deliver_due(s)


@engine.task(name=PROCESS_WEBHOOKS, queue="webhooks", retry=RESUMABLE)
def process_webhooks(event_row_id: int) -> dict[str, int]:
    """Retry the stored Stripe event `event_row_id` (and take a batch of others waiting)."""
    from console.payments.webhooks import process_pending

    with task_context() as s:
        return process_pending(s, event_row_id)


@engine.periodic(cron="* * * * * *", periodic_id="webhooks-drain")
@engine.task(name=DRAIN_WEBHOOKS, queue="webhooks", queueing_lock=DRAIN_WEBHOOKS)
def drain_webhooks(timestamp: int) -> int:
    """Apply the Stripe events intake stored, a batch per transaction, until none wait.

    Deferred every second by the engine's schedule (however many workers,
    once per tick; the queueing lock keeps at most one waiting), so an
    event waits about a second before a worker applies it. Several drains
    at once are safe: claims skip each other's rows.
    """
    from console.payments.webhooks import process_pending

    done = 0
    with task_context() as s:
        while True:
            counts = process_pending(s)
            done += counts["claimed"]
            if counts["claimed"] == 0:
                return done


@engine.periodic(cron="* * * * * */5", periodic_id="stalled")
@engine.task(name="engine.retry_stalled", queueing_lock="engine.retry_stalled")
async def retry_stalled(timestamp: int) -> int:
    """Re-queue the jobs of workers that stopped sending heartbeats."""
    manager = engine.job_manager
    stalled = list(await manager.get_stalled_jobs(seconds_since_heartbeat=stalled_seconds()))
    for job in stalled:
        log.warning("re-queueing job %s (%s) of a stopped worker", job.id, job.task_name)
        await manager.retry_job(job)
    return len(stalled)


_registered = False


def register_scheduled(overrides: dict[str, str], *, schedule: bool = True) -> None:
    """A task per declared job, periodic unless its schedule is off (once per worker)."""
    global _registered  # noqa: PLW0603
    if _registered:
        return
    for spec in effective_jobs(overrides).values():
        _register(spec, periodic=schedule and spec.scheduled)
    _registered = True


def _register(spec: JobSpec, *, periodic: bool) -> None:
    def run_scheduled(timestamp: int, trigger: str = "schedule") -> None:
        with task_context() as s:
            try:
                tick = timestamp if trigger == "schedule" else None
                execute(s, spec.name, trigger=trigger, tick=tick)
            except JobSkipped as exc:
                log.info("%s", exc)

    run_scheduled.__name__ = f"job_{spec.name.replace('-', '_')}"
    task = engine.task(name=job_task(spec.name), queue=spec.queue, lock=job_task(spec.name))(
        timed(run_scheduled)
    )
    if periodic:
        engine.periodic(cron=spec.cron, periodic_id=spec.name)(task)
