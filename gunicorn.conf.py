"""gunicorn settings for the console (`gunicorn -c gunicorn.conf.py wsgi:app`).

Every value can be changed by the environment variable named beside it.
- Workers are stateless: sessions, locks and jobs live in PostgreSQL, so any
  number of workers on any number of machines serve the same console.
- The worker timeout is WORKER_TIMEOUT_SECONDS (default 30), the one number
  the console's own limits are set against: its configuration refuses to
  start unless a Stripe call gives up, retries included
  (STRIPE_CALL_DEADLINE_SECONDS), before the worker would be killed. A slow
  Stripe is then a clean 502 with its audit entry, never a killed worker.
- Prometheus counters from every worker add up (the client's multiprocess
  mode): PROMETHEUS_MULTIPROC_DIR holds one file per process; files of dead
  processes are dropped at start, and a worker's are marked dead when it exits.
  Job workers on the same machine given the same folder are added in too.
- The access log carries the path without its query string: /auth/callback
  must never write the OIDC `code` or `state` to a log. The console also logs
  one JSON line per request itself (LOG_FORMAT).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "4"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
timeout = int(os.environ.get("WORKER_TIMEOUT_SECONDS", "30"))
graceful_timeout = timeout
keepalive = 5
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "10000"))
max_requests_jitter = 500
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
# %(U)s is the path without the query string, so no URL of any route leaves its
# query (OIDC code and state, cursors, search terms) in the log; no Referer (an
# IdP URL with state). rid= is the request id the console answered with, the
# same as on the audit entry.
access_log_format = (
    '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s" rid=%({x-request-id}o)s'
)
control_socket_disable = True


def on_starting(server: object) -> None:
    # Set here, in the master before it forks the workers (they import the
    # metrics client, which reads it once), not when this file is read.
    metrics_dir = os.environ.setdefault(
        "PROMETHEUS_MULTIPROC_DIR",
        str(Path(tempfile.gettempdir()) / f"console-metrics-{os.getpid()}"),
    )
    # Counters of processes that are gone must not be added to this run's; the
    # files of live processes (job workers sharing the folder) stay.
    folder = Path(metrics_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for path in folder.glob("*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if not pid.isdigit() or not _alive(int(pid)):
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def child_exit(server: object, worker: object) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]


def post_worker_init(worker: object) -> None:
    # The app is loaded: keep the collector's full passes off the request path
    # (console/ops/gcpause.py says why).
    from flask import Flask

    from console.ops.gcpause import freeze_when_warm

    app = getattr(worker, "wsgi", None)
    if isinstance(app, Flask):  # not gunicorn's error app when loading failed
        freeze_when_warm(app)
