"""Prometheus metrics under the runbooks' names.

Counters and histograms are per process, added up across gunicorn workers by
the client's multiprocess mode; queue gauges are computed from the database at
scrape time (each a partial-index count), so every worker reports the same
truth. Labels come from small fixed sets only (routes, statuses, job names).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, current_app, g, has_app_context, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "HTTP request duration",
    ["method", "endpoint", "status"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1, 2, 5),
)
WEBHOOK_EVENTS = Counter(
    "webhook_events_total", "Stripe webhook deliveries by outcome", ["status"], registry=REGISTRY
)
PAYMENT_FAILURES = Counter("payment_failures_total", "Failed payments", registry=REGISTRY)
INVOICE_ISSUE = Counter(
    "invoice_issue_total", "Invoice transmission attempts", ["status"], registry=REGISTRY
)
REFUND_OPERATIONS = Counter(
    "refund_operations_total", "Refunds issued", ["status"], registry=REGISTRY
)
SUPPLIER_SYNC_FAILURES = Counter(
    "supplier_sync_failures_total", "Failed supplier syncs", registry=REGISTRY
)
CONSOLE_ACTIONS = Counter(
    "console_actions_total", "Guarded actions by outcome", ["action", "outcome"], registry=REGISTRY
)


class QueueCollector(Collector):
    def __init__(self, app: Flask) -> None:
        self.app = app

    def describe(self) -> list[Any]:
        # Registering must not query the database (it may not be migrated yet).
        return []

    def collect(self) -> Iterator[Any]:
        from console import db
        from console.db import utcnow
        from console.ops.jobs import job_health
        from console.queues import queue_counts

        # The app serving this scrape: the registry is per process, and a process that
        # made a second app (the test suite does) must not count through the first.
        app: Flask = current_app._get_current_object() if has_app_context() else self.app  # type: ignore[attr-defined]
        with app.app_context():
            s = db.session()
            now = utcnow()
            counts = queue_counts(s, now)
            for name, value, doc in (
                ("stuck_paid_orders", counts.stuck_orders, "Orders stuck after payment"),
                ("failed_invoices", counts.failed_invoices, "Invoices needing attention"),
                ("coupon_reservation_leaks", counts.coupon_leaks, "Expired coupon holds"),
                ("payouts_ready", counts.payouts_ready, "Seller payouts ready to release"),
            ):
                gauge = GaugeMetricFamily(name, doc)
                gauge.add_metric([], value)
                yield gauge
            findings = GaugeMetricFamily(
                "reconciliation_open_findings", "Open findings", labels=["severity"]
            )
            for severity, n in counts.findings.items():
                findings.add_metric([severity], n)
            yield findings
            # Job health from the database: jobs run in worker processes, anywhere,
            # so their story is read where it is recorded (JobRun, the queue).
            families = {
                "last_success": GaugeMetricFamily(
                    "job_last_success_timestamp_seconds", "Last successful run", labels=["job"]
                ),
                "errors": GaugeMetricFamily(
                    "job_last_run_errors", "Errors of the job's latest run", labels=["job"]
                ),
                "late": GaugeMetricFamily(
                    "job_late", "1 when the job missed its schedule twice", labels=["job"]
                ),
                "waiting": GaugeMetricFamily(
                    "job_queue_waiting", "Runs waiting for a worker", labels=["job"]
                ),
                "oldest": GaugeMetricFamily(
                    "job_queue_oldest_seconds", "Age of the oldest waiting run", labels=["job"]
                ),
            }
            for h in job_health(s, now, history=True):
                name = h.spec.name
                if h.last_success_at is not None:
                    families["last_success"].add_metric([name], h.last_success_at.timestamp())
                families["errors"].add_metric([name], h.last_run.errors if h.last_run else 0)
                families["late"].add_metric([name], 1 if h.late else 0)
                families["waiting"].add_metric([name], h.waiting)
                oldest = (now - h.oldest_waiting_at).total_seconds() if h.oldest_waiting_at else 0
                families["oldest"].add_metric([name], oldest)
            yield from families.values()
            s.rollback()


_collector: QueueCollector | None = None


def init_metrics(app: Flask) -> None:
    global _collector  # noqa: PLW0603  (one registry per process, as Prometheus expects)
    if _collector is None:
        _collector = QueueCollector(app)
        REGISTRY.register(_collector)
    else:
        _collector.app = app

    @app.before_request
    def _start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def _observe(resp: Response) -> Response:
        started = g.get("request_started")
        if started is not None:
            HTTP_DURATION.labels(
                request.method, request.endpoint or "unknown", str(resp.status_code)
            ).observe(time.perf_counter() - started)
        return resp


def exposition() -> bytes:
    """The metrics text (see `metrics_response`), for the web and a worker's own port."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        if _collector is not None:
            registry.register(_collector)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def metrics_response() -> Response:
    """The metrics text; under several gunicorn workers, their counters added up.

    In multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by gunicorn.conf.py)
    every worker writes its counters to a file there; the scrape reads all of
    them, so whichever worker answers, the totals are the same. The queue
    gauges come from the database either way.
    """
    return Response(exposition(), mimetype=CONTENT_TYPE_LATEST)
