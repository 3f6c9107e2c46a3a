"""A fault-injecting HTTP proxy for the Stripe double: faults at the wire, not in the SDK.

Stands between the console's Stripe client and `devtools.stripe_double` (or
any HTTP/1.1 upstream) on 127.0.0.1 and, for the next matching requests,
does what a real network and a real Stripe do on a bad day:

- `status`: answer 500, 502, 503 or 429 itself (with `Retry-After` when
  given); the upstream never sees the request;
- `reset`: reset the connection (TCP RST) before forwarding, so nothing
  happened upstream; `reset_after`: forward first, then reset instead of
  answering, so the effect happened and the client never learns it;
- `delay`: hold the request before forwarding; `delay_after`: forward, then
  hold the answer (past the client's timeout, the client gives up although
  the effect happened).

Every request is logged with its idempotency key and what was done to it.
Tests drive it in-process (`FaultProxy.start(upstream)`), as the console
reaches it over real TCP from any process.
"""

from __future__ import annotations

import http.client
import socket
import socketserver
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
}
KINDS = ("status", "reset", "reset_after", "delay", "delay_after")


@dataclass
class Fault:
    kind: str
    path_prefix: str = "/"
    method: str | None = "POST"
    count: int = 1
    status: int = 500
    retry_after: float | None = None
    seconds: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and path.startswith(self.path_prefix)


@dataclass
class Seen:
    method: str
    path: str
    idempotency_key: str | None
    fault: str | None
    status: int | None
    at: float = field(default_factory=time.monotonic)


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        reader = sock.makefile("rb")
        while True:
            request_line = reader.readline(65537)
            if not request_line or not request_line.strip():
                return
            method, target, _version = request_line.decode("latin-1").rstrip("\r\n").split(" ", 2)
            headers: list[tuple[str, str]] = []
            while True:
                line = reader.readline(65537).decode("latin-1").rstrip("\r\n")
                if not line:
                    break
                name, _, value = line.partition(":")
                headers.append((name.strip(), value.strip()))
            lookup = {k.lower(): v for k, v in headers}
            body = reader.read(int(lookup.get("content-length", "0") or 0))
            path = urlsplit(target).path
            fault = self.server.proxy.take(method, path)
            seen = Seen(
                method, path, lookup.get("idempotency-key"), fault.kind if fault else None, None
            )
            self.server.proxy.seen.append(seen)
            if fault is not None and fault.kind == "status":
                extra = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after else {}
                seen.status = fault.status
                self._answer(sock, fault.status, _error_body(fault.status), extra)
                continue
            if fault is not None and fault.kind == "reset":
                _reset(sock)
                return
            if fault is not None and fault.kind == "delay":
                time.sleep(fault.seconds)
            try:
                status, reply_headers, reply = self.server.proxy.forward(
                    method, target, headers, body
                )
            except OSError:
                _reset(sock)
                return
            seen.status = status
            if fault is not None and fault.kind == "reset_after":
                _reset(sock)
                return
            if fault is not None and fault.kind == "delay_after":
                time.sleep(fault.seconds)
            try:
                self._answer(sock, status, reply, dict(reply_headers))
            except OSError:
                return  # the client gave up (timeout) and closed its end

    @staticmethod
    def _answer(sock: socket.socket, status: int, body: bytes, headers: dict[str, str]) -> None:
        reason = http.client.responses.get(status, "Status")
        lines = [f"HTTP/1.1 {status} {reason}"]
        lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in HOP_BY_HOP]
        lines += [f"Content-Length: {len(body)}", "Connection: keep-alive", "", ""]
        sock.sendall("\r\n".join(lines).encode("latin-1") + body)


def _error_body(status: int) -> bytes:
    kind = "invalid_request_error" if status == 429 else "api_error"
    code = ',"code":"rate_limit"' if status == 429 else ""
    return (
        f'{{"error":{{"type":"{kind}"{code},"message":"injected at the proxy ({status})"}}}}'
    ).encode()


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a dropped connection looks to the client."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: FaultProxy


class FaultProxy:
    """The proxy, served from a background thread on 127.0.0.1."""

    def __init__(self, upstream: str, port: int = 0) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.proxy = self
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @classmethod
    def start(cls, upstream: str, port: int = 0) -> FaultProxy:
        proxy = cls(upstream, port)
        proxy._thread.start()
        return proxy

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- control

    def add_fault(self, kind: str, **options: Any) -> None:
        if kind not in KINDS:
            raise ValueError(f"fault kind must be one of {KINDS}")
        with self._lock:
            self.faults.append(Fault(kind, **options))

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.seen.clear()

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def requests(self, path_prefix: str = "/", method: str | None = "POST") -> list[Seen]:
        return [
            s
            for s in self.seen
            if s.path.startswith(path_prefix) and (method is None or s.method == method)
        ]

    # -- forwarding

    def forward(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            send = {k: v for k, v in headers if k.lower() not in HOP_BY_HOP}
            send["Content-Length"] = str(len(body))
            conn.request(method, target, body=body, headers=send)
            reply = conn.getresponse()
            data = reply.read()
            return reply.status, reply.getheaders(), data
        finally:
            conn.close()
