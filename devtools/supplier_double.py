"""A local supplier double: a small real HTTP server on 127.0.0.1 (stdlib only).

It speaks the contract in `console/suppliers/gateway.py`:

- `GET /v1/products?supplier=NAME&page=N&per_page=50`: a deterministic
  catalogue per supplier (180 products, so 4 pages, unless set otherwise);
- `POST /v1/orders` with an `Idempotency-Key` header: creates an order, or
  answers a repeated key with the order it already has
  (`Idempotent-Replayed: true`; concurrent repeats are serialized, so 50
  simultaneous identical requests create one order); the same key with other
  contents is a 409.

Faults and a record for tests (`/_control/...`, JSON): for the next N
matching requests (path prefix, method, catalogue page), answer a status
(5xx, 429, ...), wait `delay` seconds (a client timeout), answer an
unreadable body (`bad_reply`) or drop the connection (`drop`); with
`after_effect` the real effect happens first (an order created although the
client sees a failure). Also: the request log, the orders received, the
catalogue size per supplier, and a reset.

`python -m devtools.supplier_double --port 12112` runs it in the foreground.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT_CATALOG_SIZE = 180
MAX_PER_PAGE = 100


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.key_locks: dict[str, threading.Lock] = {}
        self.orders: dict[str, dict[str, Any]] = {}  # idempotency key -> record
        self.order_list: list[dict[str, Any]] = []
        self.catalog_sizes: dict[str, int] = {}
        self.catalog_versions: dict[str, str] = {}
        self.faults: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.counter = 0


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    _arrived_in: list[dict[str, Any]]  # the request log when this request arrived

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet; the request log is at /_control/requests

    # -- plumbing

    @property
    def state(self) -> _State:
        return self.server.state

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self, status: int, payload: Any, headers: dict[str, str] | None = None, raw: bytes = b""
    ) -> None:
        body = raw or json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test): nothing to answer

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": {"message": message}})

    def _log(self, status: int, path: str, query: dict[str, str], key: str | None) -> None:
        with self.state.lock:
            if self.state.requests is not self._arrived_in:
                # Reset while this request waited (a `delay` fault outliving the client's
                # timeout): it belongs to the log of the test that sent it, now gone.
                return
            self.state.requests.append(
                {
                    "method": self.command,
                    "path": path,
                    "query": query,
                    "idempotency_key": key,
                    "status": status,
                    "time": time.time(),
                }
            )

    def _take_fault(self, path: str, query: dict[str, str]) -> dict[str, Any] | None:
        with self.state.lock:
            for fault in self.state.faults:
                if fault.get("method") and fault["method"] != self.command:
                    continue
                if not path.startswith(fault.get("path_prefix", "/v1/")):
                    continue
                if fault.get("page") is not None and query.get("page") != str(fault["page"]):
                    continue
                fault["count"] = int(fault.get("count", 1)) - 1
                if fault["count"] <= 0:
                    self.state.faults.remove(fault)
                return dict(fault)
        return None

    # -- routing

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def do_DELETE(self) -> None:
        self._route()

    def _route(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        body = self._body()
        if url.path.startswith("/_control/"):
            self._control(url.path, body)
            return
        key = self.headers.get("Idempotency-Key")
        self._arrived_in = self.state.requests
        fault = self._take_fault(url.path, query)
        if fault is not None and fault.get("drop"):
            self._log(0, url.path, query, key)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)
            return
        if fault is not None and not fault.get("after_effect"):
            time.sleep(float(fault.get("delay") or 0))
            if fault.get("status"):
                self._log(int(fault["status"]), url.path, query, key)
                self._error(int(fault["status"]), "injected fault")
                return
            if fault.get("bad_reply"):
                self._log(200, url.path, query, key)
                self._send(200, None, raw=b"<html>upstream proxy error</html>")
                return
        status, payload, headers = self._effect(url.path, query, body, key)
        if fault is not None and fault.get("after_effect"):
            time.sleep(float(fault.get("delay") or 0))
            if fault.get("status"):
                status, payload = int(fault["status"]), {"error": {"message": "injected fault"}}
            elif fault.get("bad_reply"):
                self._log(200, url.path, query, key)
                self._send(200, None, raw=b'{"id": ')
                return
        self._log(status, url.path, query, key)
        self._send(status, payload, headers)

    def _effect(
        self, path: str, query: dict[str, str], body: bytes, key: str | None
    ) -> tuple[int, Any, dict[str, str]]:
        if self.command == "GET" and path == "/v1/products":
            return self._products(query)
        if self.command == "POST" and path == "/v1/orders":
            return self._create_order(body, key)
        return 404, {"error": {"message": f"no route {self.command} {path}"}}, {}

    def _products(self, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        supplier = query.get("supplier", "")
        if not supplier:
            return 400, {"error": {"message": "supplier is required"}}, {}
        try:
            page = int(query.get("page", "1"))
            per_page = min(int(query.get("per_page", "50")), MAX_PER_PAGE)
        except ValueError:
            return 400, {"error": {"message": "page and per_page are integers"}}, {}
        with self.state.lock:
            size = self.state.catalog_sizes.get(supplier, DEFAULT_CATALOG_SIZE)
            version = self.state.catalog_versions.setdefault(
                supplier, hashlib.sha256(f"{supplier}:{size}".encode()).hexdigest()[:12]
            )
        pages = max((size + per_page - 1) // per_page, 1)
        if page < 1 or page > pages:
            return 404, {"error": {"message": f"page {page} of {pages} does not exist"}}, {}
        prefix = "".join(c for c in supplier.upper() if c.isalnum())[:4] or "SUP"
        first = (page - 1) * per_page
        items = [
            {
                "sku": f"{prefix}-{n + 1:05d}",
                "name": f"{supplier} product {n + 1}",
                "available": (n * 7) % 40,
            }
            for n in range(first, min(first + per_page, size))
        ]
        return (
            200,
            {"page": page, "pages": pages, "catalog_version": version, "items": items},
            {},
        )

    def _create_order(self, body: bytes, key: str | None) -> tuple[int, Any, dict[str, str]]:
        if not key:
            return 400, {"error": {"message": "Idempotency-Key header is required"}}, {}
        try:
            order = json.loads(body or b"{}")
        except ValueError:
            return 400, {"error": {"message": "body is not JSON"}}, {}
        if not isinstance(order, dict) or not order.get("reference"):
            return 400, {"error": {"message": "reference is required"}}, {}
        fingerprint = hashlib.sha256(body).hexdigest()
        with self.state.lock:
            key_lock = self.state.key_locks.setdefault(key, threading.Lock())
        with key_lock:  # concurrent repeats of one key: one order
            with self.state.lock:
                existing = self.state.orders.get(key)
            if existing is not None:
                if existing["fingerprint"] != fingerprint:
                    return (
                        409,
                        {"error": {"message": "idempotency key reused with different contents"}},
                        {},
                    )
                return 200, existing["response"], {"Idempotent-Replayed": "true"}
            with self.state.lock:
                self.state.counter += 1
                response = {
                    "id": f"SUP-{self.state.counter:06d}",
                    "status": "accepted",
                    "reference": order["reference"],
                    "supplier": order.get("supplier"),
                    "created": int(time.time()),
                }
                self.state.orders[key] = {"fingerprint": fingerprint, "response": response}
                self.state.order_list.append(
                    {**response, "idempotency_key": key, "lines": order.get("lines", [])}
                )
            return 201, response, {}

    # -- control API

    def _control(self, path: str, body: bytes) -> None:
        data = json.loads(body or b"{}") if body else {}
        state = self.state
        if path == "/_control/faults":
            with state.lock:
                if self.command == "DELETE":
                    state.faults.clear()
                elif self.command == "POST":
                    data.setdefault("count", 1)
                    state.faults.append(data)
                faults = list(state.faults)
            self._send(200, {"faults": faults})
        elif path == "/_control/requests":
            with state.lock:
                if self.command == "DELETE":
                    state.requests = []  # a new list: requests still waiting log to the old one
                log = list(state.requests)
            self._send(200, log)
        elif path == "/_control/orders":
            with state.lock:
                orders = list(state.order_list)
            self._send(200, orders)
        elif path == "/_control/catalog" and self.command == "POST":
            with state.lock:
                state.catalog_sizes[str(data["supplier"])] = int(data["size"])
                state.catalog_versions.pop(str(data["supplier"]), None)
            self._send(200, {"ok": True})
        elif path == "/_control/reset" and self.command == "POST":
            fresh = _State()
            with state.lock:
                for name in vars(fresh):
                    if name != "lock":
                        setattr(state, name, getattr(fresh, name))
            self._send(200, {"ok": True})
        else:
            self._error(404, f"no control route {self.command} {path}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.state = _State()


class SupplierDouble:
    """The double, served from a background thread."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self.port = int(server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)

    @classmethod
    def start(cls, port: int = 0) -> SupplierDouble:
        double = cls(_Server(port))
        double._thread.start()
        return double

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- control helpers (plain HTTP, as any test would)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        import requests

        resp = requests.request(method, f"{self.url}{path}", json=body, timeout=5)
        resp.raise_for_status()
        return resp.json()

    def reset(self) -> None:
        self._call("POST", "/_control/reset", {})

    def add_fault(
        self,
        *,
        path_prefix: str = "/v1/",
        method: str | None = None,
        status: int | None = None,
        delay: float = 0.0,
        bad_reply: bool = False,
        drop: bool = False,
        after_effect: bool = False,
        page: int | None = None,
        count: int = 1,
    ) -> None:
        self._call(
            "POST",
            "/_control/faults",
            {
                "path_prefix": path_prefix,
                "method": method,
                "status": status,
                "delay": delay,
                "bad_reply": bad_reply,
                "drop": drop,
                "after_effect": after_effect,
                "page": page,
                "count": count,
            },
        )

    def clear_faults(self) -> None:
        self._call("DELETE", "/_control/faults")

    def set_catalog(self, supplier: str, size: int) -> None:
        self._call("POST", "/_control/catalog", {"supplier": supplier, "size": size})

    def orders(self) -> list[dict[str, Any]]:
        orders: list[dict[str, Any]] = self._call("GET", "/_control/orders")
        return orders

    def requests_log(self) -> list[dict[str, Any]]:
        log: list[dict[str, Any]] = self._call("GET", "/_control/requests")
        return log

    def clear_requests_log(self) -> None:
        self._call("DELETE", "/_control/requests")


def main() -> None:
    parser = argparse.ArgumentParser(description="Local supplier double on 127.0.0.1")
    parser.add_argument("--port", type=int, default=12112)
    args = parser.parse_args()
    double = SupplierDouble.start(args.port)
    print(json.dumps({"url": double.url}), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        double.stop()


if __name__ == "__main__":
    main()
