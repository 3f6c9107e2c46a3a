"""A local Stripe double: localstripe, in-process on 127.0.0.1, plus what it lacks.

localstripe (GPL, test and demo only; the `console` package never imports it)
keeps PaymentIntents, Charges, Refunds, Customers and Events. The console
also needs, and so this module adds as aiohttp routes and middlewares on
localstripe's own app (no fork):

- Connect accounts (`/v1/accounts`) and Transfers (`/v1/transfers`), which
  localstripe does not have;
- one-off invoices (`POST /v1/invoices` from pending invoice items), which
  localstripe only makes for subscriptions;
- the `created[gte|gt|lte|lt]` filter and correct `starting_after` paging on
  `GET /v1/payment_intents` (reconciliation pages through windows), and the
  Search API for PaymentIntents (`metadata['key']:'value'`, `status:'...'`,
  joined by AND: what a run filtered by an order id asks);
- idempotency: a repeated `Idempotency-Key` gets the first response back
  verbatim (`Idempotent-Replayed: true`); concurrent repeats are serialized so
  50 simultaneous identical requests create one object; the same key with
  other parameters is a 400 `idempotency_error`, as at Stripe;
- faults and a request log for tests (`/_control/...`): a status (500, 429)
  for the next N matching requests, before or *after* the real effect (a
  crash between Stripe's success and our commit), a delay (timeouts; with
  status 0 only a delay, then the real answer), and a one-second rate limit.

To get a succeeded PaymentIntent through the public API, create a card
PaymentMethod (`4242 4242 4242 4242`) and create the intent with
`confirm=true` (see `create_succeeded_payment_intent`).

`python -m devtools.stripe_double --port 12111` runs it in the foreground.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import pickle
import re
import secrets
import socket
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from aiohttp import web

_lock = threading.Lock()
_instance: StripeDouble | None = None


def _stripe_error(status: int, type_: str, message: str, code: str | None = None) -> web.Response:
    error: dict[str, Any] = {"type": type_, "message": message}
    if code:
        error["code"] = code
    return web.json_response({"error": error}, status=status)


class _State:
    """Everything the extensions keep, cleared by reset()."""

    def __init__(self) -> None:
        self.accounts: dict[str, dict[str, Any]] = {}
        self.transfers: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.idempotency: dict[tuple[str, str], dict[str, Any]] = {}
        self.key_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.faults: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.rate_limit = 0
        self.recent: deque[float] = deque()
        self.counter = 0

    def next_created(self) -> int:
        # Strictly increasing creation times keep list order stable within a second.
        self.counter += 1
        return int(time.time())


STATE = _State()


def _list_envelope(url: str, items: list[dict[str, Any]], query: Any) -> dict[str, Any]:
    """Stripe's list: newest first, `limit`, `starting_after`, `created[...]`."""
    items = sorted(items, key=lambda o: (o["created"], o["_seq"]), reverse=True)
    for op, fn in (
        ("gte", lambda a, b: a >= b),
        ("gt", lambda a, b: a > b),
        ("lte", lambda a, b: a <= b),
        ("lt", lambda a, b: a < b),
    ):
        raw = query.get(f"created[{op}]")
        if raw is not None:
            bound = int(raw)
            items = [o for o in items if fn(o["created"], bound)]
    if "created" in query:
        items = [o for o in items if o["created"] == int(query["created"])]
    after = query.get("starting_after")
    if after:
        ids = [o["id"] for o in items]
        if after not in ids:
            raise web.HTTPBadRequest(text="starting_after not found")
        items = items[ids.index(after) + 1 :]
    limit = min(int(query.get("limit", 10)), 100)
    page = items[:limit]
    return {
        "object": "list",
        "url": url,
        "has_more": len(items) > limit,
        "data": [{k: v for k, v in o.items() if not k.startswith("_")} for o in page],
    }


async def _form(request: web.Request) -> dict[str, Any]:
    from localstripe.server import get_post_data

    data = await get_post_data(request)
    return dict(data or {})


def _account_ok(account_id: str) -> dict[str, Any] | None:
    account = STATE.accounts.get(account_id)
    if account is None:
        return None
    return account


async def create_account(request: web.Request) -> web.Response:
    data = await _form(request)
    account_id = "acct_" + secrets.token_hex(8)
    account = {
        "id": account_id,
        "object": "account",
        "type": data.get("type", "express"),
        "email": data.get("email"),
        "charges_enabled": True,
        "payouts_enabled": True,
        "capabilities": {"transfers": "active", "card_payments": "active"},
        "metadata": data.get("metadata") or {},
        "created": STATE.next_created(),
        "_seq": STATE.counter,
        "livemode": False,
    }
    if isinstance(data.get("id"), str) and data["id"].startswith("acct_"):
        account["id"] = account_id = data["id"]
    STATE.accounts[account_id] = account
    return web.json_response({k: v for k, v in account.items() if not k.startswith("_")})


async def retrieve_account(request: web.Request) -> web.Response:
    account = STATE.accounts.get(request.match_info["id"])
    if account is None:
        return _stripe_error(
            404, "invalid_request_error", "No such account", code="resource_missing"
        )
    return web.json_response({k: v for k, v in account.items() if not k.startswith("_")})


async def update_account(request: web.Request) -> web.Response:
    account = STATE.accounts.get(request.match_info["id"])
    if account is None:
        return _stripe_error(
            404, "invalid_request_error", "No such account", code="resource_missing"
        )
    data = await _form(request)
    for key in ("email", "charges_enabled", "payouts_enabled"):
        if key in data:
            value = data[key]
            account[key] = value in (True, "true") if key != "email" else value
    if isinstance(data.get("capabilities"), dict):
        account["capabilities"].update(data["capabilities"])
    if isinstance(data.get("metadata"), dict):
        account["metadata"].update(data["metadata"])
    return web.json_response({k: v for k, v in account.items() if not k.startswith("_")})


async def list_accounts(request: web.Request) -> web.Response:
    return web.json_response(
        _list_envelope("/v1/accounts", list(STATE.accounts.values()), request.query)
    )


async def create_transfer(request: web.Request) -> web.Response:
    data = await _form(request)
    try:
        amount = int(data.get("amount", 0))
    except (TypeError, ValueError):
        amount = 0
    if amount <= 0:
        return _stripe_error(400, "invalid_request_error", "Invalid positive integer", "amount")
    currency = str(data.get("currency") or "").lower()
    if len(currency) != 3:
        return _stripe_error(400, "invalid_request_error", "Invalid currency", "currency")
    destination = str(data.get("destination") or "")
    account = _account_ok(destination)
    if account is None:
        return _stripe_error(
            400,
            "invalid_request_error",
            f"No such destination: '{destination}'",
            code="resource_missing",
        )
    if account["capabilities"].get("transfers") != "active":
        return _stripe_error(
            400,
            "invalid_request_error",
            "Your destination account needs to have at least one of the following "
            "capabilities enabled: transfers, crypto_transfers, legacy_payments",
            code="insufficient_capabilities_for_transfer",
        )
    transfer = {
        "id": "tr_" + secrets.token_hex(12),
        "object": "transfer",
        "amount": amount,
        "amount_reversed": 0,
        "currency": currency,
        "destination": destination,
        "transfer_group": data.get("transfer_group"),
        "description": data.get("description"),
        "metadata": data.get("metadata") or {},
        "reversed": False,
        "livemode": False,
        "created": STATE.next_created(),
        "_seq": STATE.counter,
    }
    STATE.transfers[transfer["id"]] = transfer
    return web.json_response({k: v for k, v in transfer.items() if not k.startswith("_")})


async def retrieve_transfer(request: web.Request) -> web.Response:
    transfer = STATE.transfers.get(request.match_info["id"])
    if transfer is None:
        return _stripe_error(
            404, "invalid_request_error", "No such transfer", code="resource_missing"
        )
    return web.json_response({k: v for k, v in transfer.items() if not k.startswith("_")})


async def list_transfers(request: web.Request) -> web.Response:
    items = list(STATE.transfers.values())
    for key in ("transfer_group", "destination"):
        if key in request.query:
            items = [t for t in items if t.get(key) == request.query[key]]
    return web.json_response(_list_envelope("/v1/transfers", items, request.query))


async def create_one_off_invoice(request: web.Request) -> web.Response:
    """A one-off invoice from the customer's pending items (localstripe only does subscriptions)."""
    from localstripe.resources import InvoiceItem, store

    data = await _form(request)
    customer = str(data.get("customer") or "")
    if f"customer:{customer}" not in store:
        return _stripe_error(400, "invalid_request_error", f"No such customer: '{customer}'")
    pending = [
        item
        for key, item in list(store.items())
        if key.startswith("invoiceitem:")
        and isinstance(item, InvoiceItem)
        and item.customer == customer
        and item.invoice is None
    ]
    if not pending:
        return _stripe_error(
            400,
            "invalid_request_error",
            "Nothing to invoice for customer",
            "invoice_no_customer_line_items",
        )
    invoice_id = "in_double_" + secrets.token_hex(10)
    for item in pending:
        item.invoice = invoice_id
    invoice = {
        "id": invoice_id,
        "object": "invoice",
        "customer": customer,
        "status": "draft",
        "amount_due": sum(int(item.amount) for item in pending),
        "currency": pending[0].currency,
        "description": data.get("description"),
        "metadata": data.get("metadata") or {},
        "created": STATE.next_created(),
        "livemode": False,
    }
    STATE.invoices[invoice_id] = invoice
    return web.json_response(invoice)


def _list_payment_intents(request: web.Request) -> web.Response:
    from localstripe.resources import store

    # Filter and page on light stubs; export (and expand) only the page's objects.
    objects = {}
    stubs = []
    for key, pi in list(store.items()):
        if key.startswith("payment_intent:"):
            objects[pi.id] = pi
            stubs.append(
                {"id": pi.id, "created": pi.created, "_seq": getattr(pi, "_double_seq", 0)}
            )
    envelope = _list_envelope("/v1/payment_intents", stubs, request.query)
    expand = [
        e[len("data.") :] for e in request.query.getall("expand[]", []) if e.startswith("data.")
    ]
    envelope["data"] = [
        objects[stub["id"]]._export(expand=expand or None) for stub in envelope["data"]
    ]
    return web.json_response(envelope)


# --------------------------------------------------------------------------- middlewares


def _api_key(request: web.Request) -> str:
    return request.headers.get("Authorization", "")


@web.middleware
async def control_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Faults, rate limit, request log and idempotency, before localstripe sees it."""
    if request.path.startswith("/_control/"):
        # Control routes skip localstripe's API-key check.
        route_handler = request.match_info.handler
        response: web.StreamResponse = await route_handler(request)
        return response
    request[_ARRIVED_IN] = STATE.requests
    now = time.monotonic()
    if STATE.rate_limit:
        while STATE.recent and now - STATE.recent[0] > 1.0:
            STATE.recent.popleft()
        if len(STATE.recent) >= STATE.rate_limit:
            return _log(request, _rate_limited())
        STATE.recent.append(now)

    fault = _take_fault(request)
    if fault is not None and not fault.get("status"):
        # status 0: only slow (a busy Stripe), then answer normally.
        await asyncio.sleep(float(fault.get("delay") or 0))
        fault = None
    if fault is not None and not fault.get("after_effect"):
        if fault.get("delay"):
            await asyncio.sleep(float(fault["delay"]))
        return _log(request, _fault_response(fault))

    key = request.headers.get("Idempotency-Key")
    if request.method == "POST" and key:
        body = await request.read()
        lock_key = (_api_key(request), key)
        lock = STATE.key_locks.setdefault(lock_key, asyncio.Lock())
        fingerprint = hashlib.sha256(request.path.encode() + b"\n" + body).hexdigest()
        async with lock:
            cached = STATE.idempotency.get(lock_key)
            if cached is not None:
                if cached["fingerprint"] != fingerprint:
                    return _log(
                        request,
                        _stripe_error(
                            400,
                            "idempotency_error",
                            "Keys for idempotent requests can only be used with the same "
                            "parameters they were first used with.",
                        ),
                    )
                resp = web.Response(
                    body=cached["body"], status=cached["status"], content_type="application/json"
                )
                resp.headers["Idempotent-Replayed"] = "true"
                resp.headers["Idempotency-Key"] = key
                return _log(request, resp)
            resp = await _dispatch(request, handler)
            if resp.status < 500:
                STATE.idempotency[lock_key] = {
                    "fingerprint": fingerprint,
                    "status": resp.status,
                    "body": resp.body,
                }
            resp.headers["Idempotency-Key"] = key
    else:
        resp = await _dispatch(request, handler)
    if fault is not None:  # after_effect: the effect happened, the client sees a failure
        if fault.get("delay"):
            await asyncio.sleep(float(fault["delay"]))
        return _log(request, _fault_response(fault))
    return _log(request, resp)


_QUOTED = r"((?:[^'\\]|\\.)*)"
_SEARCH_TERM = re.compile(rf"^\s*(?:metadata\['{_QUOTED}'\]|(status|currency)):'{_QUOTED}'\s*$")


def _search_payment_intents(request: web.Request) -> web.Response:
    """`GET /v1/payment_intents/search`: `metadata['k']:'v'`, `status:'v'`, joined by AND."""
    from localstripe.resources import store

    terms = []
    for part in re.split(r"\s+AND\s+", request.query.get("query", "")):
        m = _SEARCH_TERM.match(part)
        if m is None:
            return _stripe_error(400, "invalid_request_error", f"unsupported search query: {part}")
        key, field, value = m.group(1), m.group(2), re.sub(r"\\(.)", r"\1", m.group(3))
        terms.append((re.sub(r"\\(.)", r"\1", key) if key is not None else None, field, value))
    matches = []
    for k, pi in list(store.items()):
        if not k.startswith("payment_intent:"):
            continue
        if all(
            ((pi.metadata or {}).get(key) == value)
            if key is not None
            else str(getattr(pi, str(field), "")) == value
            for key, field, value in terms
        ):
            matches.append(pi)
    matches.sort(key=lambda pi: (pi.created, getattr(pi, "_double_seq", 0)), reverse=True)
    limit = min(int(request.query.get("limit", 10)), 100)
    expand = [
        e[len("data.") :] for e in request.query.getall("expand[]", []) if e.startswith("data.")
    ]
    return web.json_response(
        {
            "object": "search_result",
            "url": "/v1/payment_intents/search",
            "has_more": len(matches) > limit,
            "next_page": None,
            "data": [pi._export(expand=expand or None) for pi in matches[:limit]],
        }
    )


async def _dispatch(request: web.Request, handler: Any) -> web.Response:
    if request.method == "GET" and request.path == "/v1/payment_intents":
        return _list_payment_intents(request)
    if request.method == "GET" and request.path == "/v1/payment_intents/search":
        return _search_payment_intents(request)
    if request.method == "POST" and request.path == "/v1/invoices":
        return await create_one_off_invoice(request)
    if request.method == "GET" and request.path.startswith("/v1/invoices/in_double_"):
        invoice = STATE.invoices.get(request.path.rsplit("/", 1)[-1])
        if invoice is None:
            return _stripe_error(
                404, "invalid_request_error", "No such invoice", "resource_missing"
            )
        return web.json_response(invoice)
    resp = await handler(request)
    if request.method == "POST" and request.path == "/v1/payment_intents":
        _stamp_payment_intent(resp)
    if not isinstance(resp, web.Response):
        raise TypeError("unexpected streaming response")
    return resp


def _stamp_payment_intent(resp: web.StreamResponse) -> None:
    """Give PaymentIntents a creation sequence so lists are stable within a second."""
    from localstripe.resources import store

    if not isinstance(resp, web.Response) or resp.status != 200 or resp.body is None:
        return
    try:
        body = json.loads(bytes(resp.body))  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return
    pi = store.get("payment_intent:" + str(body.get("id")))
    if pi is not None and not hasattr(pi, "_double_seq"):
        STATE.counter += 1
        pi._double_seq = STATE.counter


def _take_fault(request: web.Request) -> dict[str, Any] | None:
    for fault in STATE.faults:
        if fault.get("method") and fault["method"] != request.method:
            continue
        if not request.path.startswith(fault.get("path_prefix", "/")):
            continue
        fault["count"] = int(fault.get("count", 1)) - 1
        if fault["count"] <= 0:
            STATE.faults.remove(fault)
        return fault
    return None


def _fault_response(fault: dict[str, Any]) -> web.Response:
    status = int(fault.get("status", 500))
    if status == 429:
        return _rate_limited()
    return _stripe_error(status, "api_error", "An unexpected error occurred (injected fault).")


def _rate_limited() -> web.Response:
    return _stripe_error(
        429,
        "invalid_request_error",
        "Too many requests hit the API too quickly.",
        code="rate_limit",
    )


# The request log current when a request arrived: the one it belongs to.
_ARRIVED_IN = web.RequestKey("console_arrived_in", list)


def _log(request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
    if request.get(_ARRIVED_IN, STATE.requests) is not STATE.requests:
        # Cleared or reset while this request waited (a delay outliving the client's
        # timeout): it belongs to the log of the test that sent it, now gone.
        return resp
    STATE.requests.append(
        {
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "idempotency_key": request.headers.get("Idempotency-Key"),
            "status": resp.status,
            "time": time.time(),
        }
    )
    return resp


# --------------------------------------------------------------------------- control routes


async def control_faults(request: web.Request) -> web.Response:
    if request.method == "DELETE":
        STATE.faults.clear()
    else:
        fault = await request.json()
        fault.setdefault("count", 1)
        STATE.faults.append(fault)
    return web.json_response({"faults": STATE.faults})


async def control_rate_limit(request: web.Request) -> web.Response:
    STATE.rate_limit = int((await request.json()).get("per_second", 0))
    STATE.recent.clear()
    return web.json_response({"per_second": STATE.rate_limit})


async def control_requests(request: web.Request) -> web.Response:
    if request.method == "DELETE":
        STATE.requests = []  # a new list: requests still waiting log to the old one
    return web.json_response(STATE.requests)


async def control_reset(request: web.Request) -> web.Response:
    from localstripe.resources import store

    store.clear()
    global STATE  # noqa: PLW0603  (one double per process)
    STATE = _State()
    return web.json_response({"ok": True})


def _extend_localstripe() -> web.Application:
    """Add the routes and middleware to localstripe's app, once per process."""
    from localstripe import server
    from localstripe.resources import store

    app: web.Application = server.app
    if getattr(app, "_console_extended", False):
        return app
    store.dump_to_disk = lambda: None  # in-memory only: never a shared pickle
    store.try_load_from_disk = lambda: None
    app.middlewares.insert(0, control_middleware)
    router = app.router
    router.add_post("/v1/accounts", create_account)
    router.add_get("/v1/accounts", list_accounts)
    router.add_get("/v1/accounts/{id}", retrieve_account)
    router.add_post("/v1/accounts/{id}", update_account)
    router.add_post("/v1/transfers", create_transfer)
    router.add_get("/v1/transfers", list_transfers)
    router.add_get("/v1/transfers/{id}", retrieve_transfer)
    router.add_post("/_control/faults", control_faults)
    router.add_delete("/_control/faults", control_faults)
    router.add_post("/_control/rate_limit", control_rate_limit)
    router.add_get("/_control/requests", control_requests)
    router.add_delete("/_control/requests", control_requests)
    router.add_post("/_control/reset", control_reset)
    app._console_extended = True  # type: ignore[attr-defined]
    return app


async def _in_loop(fn: Any) -> Any:
    """Run `fn` on the double's event loop, between two requests."""
    return fn()


class StripeDouble:
    """The double, served from a background thread; one per process."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @classmethod
    def start(cls, port: int = 0) -> StripeDouble:
        global _instance  # noqa: PLW0603
        with _lock:
            if _instance is not None:
                return _instance
            app = _extend_localstripe()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            double = cls(sock.getsockname()[1])
            double._thread.start()

            async def serve() -> web.AppRunner:
                runner = web.AppRunner(app, access_log=None)
                await runner.setup()
                await web.SockSite(runner, sock).start()
                return runner

            double._runner = asyncio.run_coroutine_threadsafe(serve(), double._loop).result(10)
            _instance = double
            return double

    def stop(self) -> None:
        """Keep serving: the aiohttp app can only run once per process (tests reuse it)."""

    def shutdown(self) -> None:
        global _instance  # noqa: PLW0603
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        _instance = None

    # -- persistence (the demo keeps Stripe's objects across restarts)

    _KEPT = ("accounts", "transfers", "invoices", "idempotency", "counter")

    def save(self, path: Path) -> None:
        """Write every object the double holds to `path` (pickle), for the next start."""
        from localstripe.resources import store

        def dump() -> bytes:
            state = {name: getattr(STATE, name) for name in self._KEPT}
            return pickle.dumps({"store": dict(store), "state": state})

        data = asyncio.run_coroutine_threadsafe(_in_loop(dump), self._loop).result(30)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    def load(self, path: Path) -> bool:
        """Take the objects a previous run saved; False when there is no snapshot."""
        from localstripe.resources import store

        if not path.is_file():
            return False
        snapshot = pickle.loads(path.read_bytes())  # our own file, written by save()

        def restore() -> None:
            dict.clear(store)
            dict.update(store, snapshot["store"])
            for name, value in snapshot["state"].items():
                setattr(STATE, name, value)

        asyncio.run_coroutine_threadsafe(_in_loop(restore), self._loop).result(30)
        return True

    # -- control helpers (plain HTTP, as any test would)

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        import requests

        resp = requests.post(f"{self.url}{path}", json=body, timeout=5)
        resp.raise_for_status()
        return resp.json()

    def reset(self) -> None:
        self._post("/_control/reset", {})

    def add_fault(
        self,
        *,
        path_prefix: str,
        status: int = 500,
        method: str | None = "POST",
        count: int = 1,
        delay: float = 0.0,
        after_effect: bool = False,
    ) -> None:
        self._post(
            "/_control/faults",
            {
                "path_prefix": path_prefix,
                "status": status,
                "method": method,
                "count": count,
                "delay": delay,
                "after_effect": after_effect,
            },
        )

    def clear_faults(self) -> None:
        import requests

        requests.delete(f"{self.url}/_control/faults", timeout=5).raise_for_status()

    def set_rate_limit(self, per_second: int) -> None:
        self._post("/_control/rate_limit", {"per_second": per_second})

    def requests_log(self) -> list[dict[str, Any]]:
        import requests

        log: list[dict[str, Any]] = requests.get(f"{self.url}/_control/requests", timeout=5).json()
        return log

    def clear_requests_log(self) -> None:
        import requests

        requests.delete(f"{self.url}/_control/requests", timeout=5).raise_for_status()

    def count_requests(self, method: str | None = None, path_prefix: str | None = None) -> int:
        return sum(
            1
            for r in self.requests_log()
            if (method is None or r["method"] == method)
            and (path_prefix is None or r["path"].startswith(path_prefix))
        )

    def count_calls(self, method: str | None = None, path_prefix: str | None = None) -> int:
        """Requests as the client meant them: one repeated straight after itself is one.

        A client that gave up on a slow answer (a timeout) asks again at once with the
        same request; that retry is not another call. The same request asked again
        later (a second walk of a list) still counts.
        """
        calls, previous = 0, None
        for r in self.requests_log():
            if (method is not None and r["method"] != method) or (
                path_prefix is not None and not r["path"].startswith(path_prefix)
            ):
                continue
            key = (r["method"], r["path"], sorted(r["query"].items()), r["idempotency_key"])
            calls += key != previous
            previous = key
        return calls


def create_succeeded_payment_intent(
    client: Any,
    *,
    amount: int,
    currency: str,
    metadata: dict[str, str] | None = None,
    customer: str | None = None,
) -> Any:
    """Create a PaymentIntent that has succeeded, through the public API."""
    pm = client.v1.payment_methods.create(
        {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    params: dict[str, Any] = {
        "amount": amount,
        "currency": currency.lower(),
        "payment_method": pm.id,
        "confirm": True,
        "metadata": metadata or {},
    }
    if customer:
        params["customer"] = customer
    return client.v1.payment_intents.create(params)


def main() -> None:
    parser = argparse.ArgumentParser(description="Local Stripe double on 127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    args = parser.parse_args()
    double = StripeDouble.start(args.port)
    print(json.dumps({"url": double.url}), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        double.shutdown()


if __name__ == "__main__":
    main()
