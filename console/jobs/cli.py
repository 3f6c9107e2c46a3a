"""`flask --app wsgi jobs worker|status|run`: the job engine from the command line."""

from __future__ import annotations

from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup

from console.clitools import echo, run_job_command

jobs_cli = AppGroup("jobs", help="Background jobs: workers, schedule and health.")


@jobs_cli.command("worker")
@click.option("--concurrency", default=4, show_default=True, help="Jobs run at once.")
@click.option("--queue", "queues", multiple=True, help="Only these queues (default: all).")
@click.option("--name", default=None, help="Worker name in the logs.")
@click.option(
    "--heartbeat",
    default=5.0,
    show_default=True,
    help="Seconds between heartbeats; a worker silent for 30 s is taken as stopped.",
)
@click.option(
    "--schedule/--no-schedule",
    default=True,
    show_default=True,
    help="Defer the scheduled jobs on their cron (any number of workers may: each tick runs once).",
)
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Serve this worker's metrics on 127.0.0.1:PORT/metrics (METRICS_BIND to change).",
)
def worker_cmd(**options: Any) -> None:
    """Run a worker until SIGTERM or Ctrl-C (running jobs finish first)."""
    from console.jobs.engine import run_worker

    run_worker(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        concurrency=options["concurrency"],
        queues=list(options["queues"]) or None,
        name=options["name"],
        heartbeat_seconds=options["heartbeat"],
        schedule=options["schedule"],
        metrics_port=options["metrics_port"],
    )


@jobs_cli.command("status")
def status_cmd() -> None:
    """Every scheduled job: schedule, last run, last success, late or not, waiting jobs."""
    from console import db
    from console.db import utcnow
    from console.ops.jobs import job_health

    for h in job_health(db.session(), utcnow(), history=True):
        last = h.last_run
        ran = f"{last.started_at:%Y-%m-%d %H:%M} {last.status.value}" if last else "never"
        ok = f"{h.last_success_at:%Y-%m-%d %H:%M}" if h.last_success_at else "never"
        echo(
            f"{h.spec.name:<30} {h.spec.cron:<16} {'LATE' if h.late else 'on time':<8} "
            f"last run {ran}; last success {ok}; waiting {h.waiting}"
        )


@jobs_cli.command("run")
@click.argument("name")
@click.option("--dry-run", is_flag=True)
def run_cmd(name: str, dry_run: bool) -> None:
    """Run scheduled job NAME once in this process (as its own command would)."""
    from console.ops.jobs import JOBS

    if name not in JOBS:
        raise click.BadParameter(f"no job {name}; one of: {', '.join(sorted(JOBS))}")
    run_job_command(name, dry_run=dry_run)
