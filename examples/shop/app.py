"""The reference shop: its records, its push to the console, its webhook receiver.

Records live in the shop's own database (`shop_records`: one row per record,
the record in the console API's shape as JSON, plus the shop's version). The
shop pushes them with `push()` (batches of up to 500 through `/api/v1`) and
receives the console's events at `POST /webhooks/console`:

1. verify `webhook-id`, `webhook-timestamp`, `webhook-signature` with the
   endpoint secret (`standardwebhooks.Webhook.verify`; 400 if it fails);
2. skip an event whose `webhook-id` it already applied (at-least-once
   delivery means the same event can arrive twice);
3. skip an event whose per-record `sequence` is not newer than the last one
   applied to that record (events can arrive out of order after retries);
4. apply the console's fields to its own record and bump its version, so
   its next push carries the fix instead of undoing it.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any

import psycopg
import requests
from flask import Flask, abort, jsonify, render_template_string, request
from psycopg.types.json import Jsonb
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from werkzeug.serving import make_server

SCHEMA = """
CREATE TABLE IF NOT EXISTS shop_records (
    kind text NOT NULL,
    id text NOT NULL,
    data jsonb NOT NULL,
    version bigint NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now(),
    pushed_version bigint,
    PRIMARY KEY (kind, id)
);
CREATE TABLE IF NOT EXISTS shop_console_events (
    webhook_id text PRIMARY KEY,
    type text NOT NULL,
    record_kind text NOT NULL,
    record_id text NOT NULL,
    sequence bigint NOT NULL,
    outcome text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS shop_record_sequences (
    kind text NOT NULL,
    id text NOT NULL,
    last_sequence bigint NOT NULL,
    PRIMARY KEY (kind, id)
);
"""

# The API path of each record kind the shop pushes, in dependency order.
PATHS = {
    "inventory_item": "inventory-items",
    "coupon": "coupons",
    "order": "orders",
    "reservation": "inventory-reservations",
    "invoice": "invoices",
    "payout": "payouts",
    "inventory_movement": "inventory-movements",
    "coupon_reservation": "coupon-reservations",
    "supplier_sync": "supplier-sync-runs",
}
# What the console may change in each kind (the fields its fixes own).
CONSOLE_FIELDS = {
    "order": ("status", "amount_refunded", "supplier_forwarded_at", "supplier_order_ref",
              "confirmed_at", "paid_at"),
    "invoice": ("status", "external_ref", "next_attempt_at"),
    "payout": ("status", "admin_hold", "stripe_transfer_id", "released_at"),
    "inventory_item": ("stock_count",),
    "coupon": ("reserved_count",),
}  # fmt: skip
# Fields the shop does not send back (they are the console's own).
READ_ONLY = {
    "order": ("amount_refunded", "confirmed_at", "completed_at"),
    "payout": ("status", "admin_hold", "stripe_transfer_id", "released_at"),
}


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class ShopStore:
    """The shop's database (plain psycopg: a storefront of its own, not the console's ORM)."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url.replace("postgresql+psycopg://", "postgresql://")
        self._lock = threading.Lock()
        with self.connect() as conn:
            conn.execute(SCHEMA)

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, autocommit=False)

    def put(self, kind: str, record: dict[str, Any]) -> None:
        """Create or change a record locally: a new version, to be pushed."""
        with self.connect() as conn:
            conn.execute(
                """
                INSERT INTO shop_records (kind, id, data) VALUES (%s, %s, %s)
                ON CONFLICT (kind, id) DO UPDATE
                   SET data = EXCLUDED.data, version = shop_records.version + 1,
                       updated_at = clock_timestamp()
                """,
                (kind, record["id"], Jsonb(record)),
            )

    def get(self, kind: str, record_id: str) -> dict[str, Any] | None:
        with self.connect() as conn:
            row = conn.execute(
                "SELECT data, version, updated_at FROM shop_records WHERE kind = %s AND id = %s",
                (kind, record_id),
            ).fetchone()
        if row is None:
            return None
        return {**row[0], "_version": row[1], "_updated_at": row[2].isoformat()}

    def records(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT kind, data, version FROM shop_records "
                "WHERE %s::text IS NULL OR kind = %s ORDER BY kind, id",
                (kind, kind),
            ).fetchall()
        return [{"kind": k, **d, "_version": v} for k, d, v in rows]

    def unpushed(self, kind: str) -> list[tuple[dict[str, Any], int, datetime]]:
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT data, version, updated_at FROM shop_records WHERE kind = %s "
                "AND (pushed_version IS NULL OR pushed_version < version) ORDER BY id",
                (kind,),
            ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def mark_pushed(self, kind: str, versions: dict[str, int]) -> None:
        with self.connect() as conn:
            for record_id, version in versions.items():
                conn.execute(
                    "UPDATE shop_records SET pushed_version = %s WHERE kind = %s AND id = %s",
                    (version, kind, record_id),
                )

    def events(self) -> list[dict[str, Any]]:
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT webhook_id, type, record_kind, record_id, sequence, outcome "
                "FROM shop_console_events ORDER BY received_at"
            ).fetchall()
        keys = ("webhook_id", "type", "record_kind", "record_id", "sequence", "outcome")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def apply_event(self, webhook_id: str, event: dict[str, Any]) -> str:
        """Apply a verified event once; returns applied | duplicate | stale | unknown."""
        data = event.get("data") or {}
        kind, record_id = str(data.get("kind")), str(data.get("id"))
        sequence = int(data.get("sequence") or 0)
        state = data.get("record") or {}
        with self.connect() as conn:
            seen = conn.execute(
                "SELECT 1 FROM shop_console_events WHERE webhook_id = %s FOR UPDATE",
                (webhook_id,),
            ).fetchone()
            if seen:
                return "duplicate"
            conn.execute(
                "INSERT INTO shop_record_sequences (kind, id, last_sequence) VALUES (%s, %s, 0) "
                "ON CONFLICT DO NOTHING",
                (kind, record_id),
            )
            (last,) = conn.execute(
                "SELECT last_sequence FROM shop_record_sequences WHERE kind = %s AND id = %s "
                "FOR UPDATE",
                (kind, record_id),
            ).fetchone() or (0,)
            row = conn.execute(
                "SELECT data FROM shop_records WHERE kind = %s AND id = %s FOR UPDATE",
                (kind, record_id),
            ).fetchone()
            if sequence <= last:
                outcome = "stale"
            elif row is None or kind not in CONSOLE_FIELDS:
                outcome = "unknown"
            else:
                record = dict(row[0])
                for name in CONSOLE_FIELDS[kind]:
                    if name in state:
                        record[name] = state[name]
                conn.execute(
                    "UPDATE shop_records SET data = %s, version = version + 1, "
                    "updated_at = clock_timestamp() WHERE kind = %s AND id = %s",
                    (Jsonb(record), kind, record_id),
                )
                conn.execute(
                    "UPDATE shop_record_sequences SET last_sequence = %s "
                    "WHERE kind = %s AND id = %s",
                    (sequence, kind, record_id),
                )
                outcome = "applied"
            conn.execute(
                "INSERT INTO shop_console_events "
                "(webhook_id, type, record_kind, record_id, sequence, outcome) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (webhook_id, str(event.get("type")), kind, record_id, sequence, outcome),
            )
        return outcome


class ConsoleClient:
    """The shop's side of `/api/v1`."""

    def __init__(self, console_url: str, api_key: str, timeout: float = 30) -> None:
        self.url = console_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout = timeout

    def batch(self, path: str, records: list[dict[str, Any]]) -> dict[str, Any]:
        resp = self.session.post(
            f"{self.url}/api/v1/{path}/batch", json={"records": records}, timeout=self.timeout
        )
        if resp.status_code != 200:
            raise RuntimeError(f"{path} batch: HTTP {resp.status_code}: {resp.text[:500]}")
        body: dict[str, Any] = resp.json()
        return body


def push(store: ShopStore, client: ConsoleClient) -> dict[str, dict[str, int]]:
    """Send every record changed since the last push, kind by kind, 500 at a time."""
    summary: dict[str, dict[str, int]] = {}
    for kind, path in PATHS.items():
        rows = store.unpushed(kind)
        for start in range(0, len(rows), 500):
            chunk = rows[start : start + 500]
            records = []
            for data, version, updated_at in chunk:
                body = {k: v for k, v in data.items() if k not in READ_ONLY.get(kind, ())}
                body["version"] = version
                body["updated_at"] = updated_at.isoformat()
                records.append(body)
            result = client.batch(path, records)
            done = {}
            for (data, version, _), r in zip(chunk, result["results"], strict=True):
                if r["result"] in ("created", "updated", "unchanged"):
                    done[data["id"]] = version
            store.mark_pushed(kind, done)
            totals = summary.setdefault(path, {})
            for name, n in result["counts"].items():
                totals[name] = totals.get(name, 0) + n
    return summary


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Reference shop</title></head>
<body><main>
<h1>Reference shop: orders</h1>
<table>
<thead><tr><th scope="col">Order</th><th scope="col">Status</th><th scope="col">Amount</th>
<th scope="col">Refunded</th><th scope="col">Supplier ref</th>
<th scope="col">Version</th></tr></thead>
<tbody>
{% for o in orders %}
<tr id="shop-order-{{ o.id }}"><td>{{ o.id }}</td><td class="status">{{ o.status }}</td>
<td>{{ o.amount }} {{ o.currency }}</td><td>{{ o.get('amount_refunded', 0) }}</td>
<td class="supplier-ref">{{ o.get('supplier_order_ref') or '-' }}</td>
<td>{{ o._version }}</td></tr>
{% endfor %}
</tbody></table>
<h2>Events received from the console</h2>
<ul>{% for e in events %}
<li>{{ e.type }} {{ e.record_id }} #{{ e.sequence }}: {{ e.outcome }}</li>
{% endfor %}</ul>
</main></body></html>"""


def create_shop_app(store: ShopStore, webhook_secret: str | None) -> Flask:
    app = Flask("reference_shop")
    app.config["WEBHOOK_SECRET"] = webhook_secret
    app.config["FAIL_NEXT"] = 0
    app.config["REJECTED"] = 0

    @app.post("/webhooks/console")
    def receive() -> Any:
        if app.config["FAIL_NEXT"] > 0:  # an outage, on demand (tests and the demo)
            app.config["FAIL_NEXT"] -= 1
            return jsonify(error="shop temporarily unavailable"), 503
        secret = app.config["WEBHOOK_SECRET"]
        if not secret:
            return jsonify(error="no webhook secret configured"), 503
        body = request.get_data(as_text=True)
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            event = Webhook(secret).verify(body, headers)
        except WebhookVerificationError as exc:
            app.config["REJECTED"] += 1
            return jsonify(error=f"signature: {exc}"), 400
        outcome = store.apply_event(headers["webhook-id"], event)
        return jsonify(outcome=outcome)

    @app.post("/_control/fail")
    def fail() -> Any:
        app.config["FAIL_NEXT"] = int((request.get_json(silent=True) or {}).get("count", 1))
        return jsonify(fail_next=app.config["FAIL_NEXT"])

    @app.post("/_control/secret")
    def set_secret() -> Any:
        app.config["WEBHOOK_SECRET"] = (request.get_json(silent=True) or {}).get("secret")
        return jsonify(ok=True)

    @app.get("/api/orders/<order_id>")
    def order(order_id: str) -> Any:
        found = store.get("order", order_id)
        if found is None:
            abort(404)
        return jsonify(found)

    @app.get("/api/events")
    def events() -> Any:
        return jsonify(store.events())

    @app.get("/")
    def index() -> Any:
        return render_template_string(
            PAGE, orders=store.records("order"), events=store.events()[-20:]
        )

    return app


def ensure_database(database_url: str) -> None:
    """Create the shop's database on the server if it does not exist yet."""
    from urllib.parse import urlsplit, urlunsplit

    plain = database_url.replace("postgresql+psycopg://", "postgresql://")
    parts = urlsplit(plain)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


class ReferenceShop:
    """The shop served in a thread on 127.0.0.1 (tests and `bin/demo`)."""

    def __init__(
        self, database_url: str, console_url: str, api_key: str, webhook_secret: str | None = None
    ) -> None:
        ensure_database(database_url)
        self.store = ShopStore(database_url)
        self.client = ConsoleClient(console_url, api_key)
        self.app = create_shop_app(self.store, webhook_secret)
        self.server: Any = None
        self.thread: threading.Thread | None = None
        self.url = ""

    @classmethod
    def start(
        cls,
        *,
        database_url: str,
        console_url: str,
        api_key: str,
        webhook_secret: str | None = None,
        port: int = 0,
    ) -> ReferenceShop:
        shop = cls(database_url, console_url, api_key, webhook_secret)
        shop.server = make_server("127.0.0.1", port, shop.app, threaded=True)
        shop.url = f"http://127.0.0.1:{shop.server.server_port}"
        shop.thread = threading.Thread(target=shop.server.serve_forever, daemon=True)
        shop.thread.start()
        return shop

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/webhooks/console"

    def set_secret(self, secret: str) -> None:
        self.app.config["WEBHOOK_SECRET"] = secret

    def fail_next(self, count: int) -> None:
        self.app.config["FAIL_NEXT"] = count

    def push(self) -> dict[str, dict[str, int]]:
        return push(self.store, self.client)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
        if self.thread is not None:
            self.thread.join(timeout=5)


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
