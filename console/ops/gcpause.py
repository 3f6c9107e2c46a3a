"""Keep the garbage collector's full passes off the request path of a worker.

A worker holds ~180,000 long-lived objects once it has served each page
(modules, the app, SQLAlchemy's compiled statements, Jinja's compiled
templates). CPython's full collection walks all of them: 100-120 ms on the
2-core benchmark machine, every ~200 requests, so one list page in a few
hundred took 100+ ms instead of 8 (issue 15: these were the benchmark's p99).
`gc.freeze()` moves the objects alive at that moment into a generation the
collector never walks; later garbage is collected as before, and cheaply.

A worker freezes once its app is loaded and once more when it has served
`WARM_AFTER` requests (by then the templates and statements it uses are
compiled). What is frozen is never freed by the cycle collector, so freezing
later or repeatedly would keep garbage forever; workers are recycled after
GUNICORN_MAX_REQUESTS anyway. Not installed in tests: a test process builds
hundreds of apps whose garbage must go.
"""

from __future__ import annotations

import gc
import logging
import threading
from typing import Any

from flask import Flask

log = logging.getLogger(__name__)

WARM_AFTER = 500


def freeze_when_warm(app: Flask, warm_after: int = WARM_AFTER) -> None:
    """Freeze now, and once more after this process's `warm_after`th request to `app`."""
    gc.freeze()
    served = 0
    lock = threading.Lock()
    done = False

    @app.teardown_request
    def _count(_exc: BaseException | None) -> Any:
        nonlocal served, done
        if done:
            return
        with lock:
            served += 1
            if served < warm_after or done:
                return
            done = True
        gc.collect()  # what is garbage now is not kept by the freeze
        gc.freeze()
        log.info("gc: %d objects frozen after %d requests", gc.get_freeze_count(), served)
