"""The worker's garbage-collector freeze (console/ops/gcpause.py)."""

from __future__ import annotations

import gc

from flask import Flask

from console.ops.gcpause import freeze_when_warm


def test_a_worker_freezes_when_loaded_and_once_more_when_warm() -> None:
    app = Flask("gcpause-test")

    @app.get("/")
    def index() -> str:
        return "ok"

    client = app.test_client()
    try:
        freeze_when_warm(app, warm_after=3)
        assert gc.get_freeze_count() > 0, "nothing frozen when the app was loaded"
        gc.unfreeze()
        client.get("/")
        client.get("/")
        assert gc.get_freeze_count() == 0, "frozen before the worker was warm"
        assert client.get("/").status_code == 200
        assert gc.get_freeze_count() > 0, "not frozen on the warm_after-th request"
        gc.unfreeze()
        for _ in range(5):
            client.get("/")
        assert gc.get_freeze_count() == 0, "frozen again: later garbage would be kept"
    finally:
        gc.unfreeze()
