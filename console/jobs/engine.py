"""The job engine: procrastinate on the console's own PostgreSQL.

Web processes never run background work in a thread. They `enqueue` a job in
the same transaction as the change that asks for it (an approval, a run
start, "Run now"): the job exists exactly when the change committed. Workers
(`flask --app wsgi jobs worker`, any number, on any machine) claim each job
once; procrastinate's schedule defers every declared scheduled job
(`console.ops.jobs.JOBS`) once per tick however many workers run.

A worker killed mid-job stops sending heartbeats; `engine.retry_stalled`
(every 5 s, on any live worker) puts its jobs back in the queue, and the
money protocol's idempotency keys make the retry safe.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import procrastinate
from flask import Flask
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

engine = procrastinate.App(connector=procrastinate.PsycopgConnector())
"""The procrastinate app; its connection pool is opened by the worker command."""

_flask: Flask | None = None


class AlreadyQueued(RuntimeError):
    """A job with the same queueing lock is already waiting."""


def enqueue(
    s: Session,
    task: str,
    *,
    queue: str = "default",
    lock: str | None = None,
    queueing_lock: str | None = None,
    priority: int = 0,
    scheduled_at: datetime | None = None,
    **kwargs: Any,
) -> int:
    """Defer `task` inside the caller's transaction; return the job id.

    Raises AlreadyQueued when `queueing_lock` is taken by a waiting job (the
    caller's transaction stays usable: the insert runs in a savepoint).
    """
    stmt = text(
        "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW(:queue, :task, :priority, :lock, "
        ":queueing_lock, CAST(:args AS jsonb), :at)::procrastinate_job_to_defer_v1])"
    )
    params = {
        "queue": queue,
        "task": task,
        "priority": priority,
        "lock": lock,
        "queueing_lock": queueing_lock,
        "args": json.dumps(kwargs, separators=(",", ":"), default=str),
        "at": scheduled_at,
    }
    if queueing_lock is None:
        # Nothing to collide with: no savepoint (two round trips fewer; webhook intake).
        return int(s.execute(stmt, params).scalar_one()[0])
    try:
        with s.begin_nested():
            ids = s.execute(stmt, params).scalar_one()
    except IntegrityError as exc:
        if "queueing_lock" in str(exc.orig):
            raise AlreadyQueued(f"{task} is already waiting in the queue") from exc
        raise
    return int(ids[0])


def flask_app() -> Flask:
    """The console app of this worker process (tasks run in its app context)."""
    if _flask is None:
        raise RuntimeError("the job engine runs inside `flask --app wsgi jobs worker`")
    return _flask


@contextmanager
def task_context() -> Iterator[Session]:
    """An app context and a session of its own for one task run."""
    from console import db

    with flask_app().app_context():
        yield db.session()


def stalled_seconds() -> float:
    """JOB_STALLED_SECONDS: how long a silent worker counts as alive (default 30)."""
    return float(flask_app().config["SETTINGS"].job_stalled_seconds)


def conninfo(database_url: str) -> str:
    """The libpq form of the console's SQLAlchemy URL (TCP or unix socket)."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def _quiet_housekeeping(record: logging.LogRecord) -> bool:
    """Drop the engine's INFO lines about its own 5-second stalled-job check.

    Three lines every five seconds buried what an operator looks for (a job's
    result, an error); warnings and errors about it still get through.
    """
    if record.levelno > logging.INFO or not record.name.startswith("procrastinate"):
        return True
    return "engine.retry_stalled" not in record.getMessage()


def run_worker(
    app: Flask,
    *,
    concurrency: int = 4,
    queues: list[str] | None = None,
    name: str | None = None,
    heartbeat_seconds: float = 5.0,
    schedule: bool = True,
    metrics_port: int | None = None,
) -> None:
    """Run a worker in this process until SIGTERM/SIGINT (graceful: jobs finish).

    With `schedule=False` it runs queued jobs only and defers no scheduled ones
    (another worker keeps the schedule; tests use it to run nothing unasked).
    """
    global _flask  # noqa: PLW0603  (one console app per worker process)
    _flask = app
    for handler in logging.getLogger().handlers:  # the engine logs from child loggers
        handler.addFilter(_quiet_housekeeping)
    from console.jobs import tasks

    tasks.register_scheduled(app.config["SETTINGS"].job_schedules, schedule=schedule)
    import psycopg_pool

    pool = psycopg_pool.AsyncConnectionPool(
        conninfo(app.config["SETTINGS"].database_url),
        min_size=1,
        max_size=max(4, concurrency + 2),
        open=False,
        kwargs={"options": "-c jit=off"},
    )

    import asyncio

    async def main() -> None:
        async with pool, engine.open_async(pool):
            options: dict[str, Any] = {"name": name} if name else {}
            if queues:
                options["queues"] = queues
            await engine.run_worker_async(
                **options,
                concurrency=concurrency,
                # Finished jobs leave the queue table; their story is in JobRun
                # rows, approvals and reconciliation runs.
                delete_jobs="successful",
                update_heartbeat_interval=heartbeat_seconds,
                stalled_worker_timeout=stalled_seconds(),
            )

    if metrics_port:
        serve_metrics(metrics_port)
    log.info("job worker starting: concurrency=%s queues=%s", concurrency, queues or "all")
    try:
        asyncio.run(main())
    finally:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def serve_metrics(port: int) -> None:
    """This worker's metrics on 127.0.0.1:`port`/metrics (workers on other machines)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from console.ops.metrics import exposition

    app = flask_app()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404)
                return
            with app.app_context():
                body = exposition()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((os.environ.get("METRICS_BIND", "127.0.0.1"), port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()


def timed(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Log a task's duration (one line per run, with the task's name)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            log.info(
                "task %s finished in %.2fs",
                fn.__name__,
                time.monotonic() - started,
                extra={"task": fn.__name__},
            )

    wrapper.__name__ = fn.__name__
    wrapper.__qualname__ = fn.__qualname__
    wrapper.__module__ = fn.__module__
    wrapper.__doc__ = fn.__doc__
    return wrapper
