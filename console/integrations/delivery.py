"""Delivering the outbox to the shop's endpoints, signed with Standard Webhooks.

`deliver_due` is a plain function (the CLI `integrations deliver` and the job
engine call it): it takes each due delivery with `FOR UPDATE SKIP LOCKED`, so
two processes at once never send the same attempt twice, posts it, records
the outcome and commits row by row. At least once: a crash between the
shop's 2xx and our commit sends the event again with the same `webhook-id`,
which the shop uses to apply it once. A failed attempt is retried with
exponential backoff and full jitter; after `WEBHOOK_RETRY_WINDOW_SECONDS`
(three days) the delivery is marked failed, counted and alerted
(`outbound_webhook_deliveries_failed`, deploy/prometheus/alerts.yml).

Secrets are `whsec_<base64>` (the Standard Webhooks format), stored encrypted
with a key derived from SECRET_KEY. During a rotation both the new and the
previous secret sign (`webhook-signature: v1,<new> v1,<old>`) until the
overlap ends, so the shop can switch at its own pace.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import random
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload
from standardwebhooks.webhooks import Webhook

from console.db import utcnow
from console.integrations.models import (
    DeliveryStatus,
    EventDelivery,
    OutboxEvent,
    WebhookEndpoint,
)
from console.integrations.outbox import payload
from console.ops.metrics import REGISTRY

DELIVERIES = Counter(
    "outbound_webhook_deliveries_total",
    "Attempts to deliver events to the shop, by outcome (succeeded, retry, failed)",
    ["status"],
    registry=REGISTRY,
)
EXCERPT = 200


# ------------------------------------------------------------------ secrets


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _fernet(secret_key: str) -> Fernet:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"console-webhook-secrets", info=b"v1"
    ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def seal(secret: str, secret_key: str | None = None) -> str:
    return _fernet(secret_key or current_app.config["SECRET_KEY"]).encrypt(secret.encode()).decode()


def unseal(sealed: str, secret_key: str | None = None) -> str:
    try:
        fernet = _fernet(secret_key or current_app.config["SECRET_KEY"])
        return fernet.decrypt(sealed.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnavailable(
            "the endpoint's secret cannot be decrypted (SECRET_KEY changed?): rotate it"
        ) from exc


class SecretUnavailable(RuntimeError):
    pass


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The current secret, and the previous one while its overlap lasts."""
    out = [unseal(endpoint.secret_enc)]
    if (
        endpoint.previous_secret_enc
        and endpoint.previous_secret_expires_at
        and endpoint.previous_secret_expires_at > now
    ):
        out.append(unseal(endpoint.previous_secret_enc))
    return out


def sign(secrets_: list[str], msg_id: str, timestamp: datetime, body: str) -> str:
    """The `webhook-signature` header: one `v1,<base64>` per secret, space separated."""
    return " ".join(Webhook(secret).sign(msg_id, timestamp, body) for secret in secrets_)


def check_url(url: str, *, allow_private: bool) -> str | None:
    """Why an endpoint URL is refused, or None. Production sends only to public https."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "the URL must be http(s)://host/..."
    if parts.username or parts.password:
        return "the URL must not carry credentials"
    if allow_private:
        return None
    if parts.scheme != "https":
        return "production sends events over https only"
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443)
    except OSError:
        return f"{parts.hostname} does not resolve"
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if address.is_private or address.is_loopback or address.is_link_local:
            return f"{parts.hostname} resolves to a private address"
    return None


# ------------------------------------------------------------------ backoff


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: int = 30
    cap_seconds: int = 6 * 3600
    window_seconds: int = 3 * 86400

    @classmethod
    def from_config(cls) -> RetryPolicy:
        c = current_app.config
        return cls(
            int(c.get("WEBHOOK_RETRY_BASE_SECONDS", 30)),
            int(c.get("WEBHOOK_RETRY_CAP_SECONDS", 6 * 3600)),
            int(c.get("WEBHOOK_RETRY_WINDOW_SECONDS", 3 * 86400)),
        )

    def delay(self, attempts: int, rng: random.Random | None = None) -> timedelta:
        """Exponential backoff with jitter: between half and all of base * 2^(n-1), capped."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** max(attempts - 1, 0))
        r = (rng or random).uniform(0.5, 1.0)
        return timedelta(seconds=max(1.0, ceiling * r))


# ------------------------------------------------------------------ sending


class Poster(Protocol):
    def __call__(
        self, url: str, body: bytes, headers: dict[str, str], timeout: float
    ) -> tuple[int, str]: ...


def http_post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, str]:
    resp = requests.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
    return resp.status_code, resp.text[:1000]


@dataclass
class DeliveryReport:
    scanned: int = 0
    acted: int = 0
    """Deliveries that succeeded."""
    retried: int = 0
    failed: int = 0
    errors: int = 0
    last_error: str | None = None
    lines: list[str] = field(default_factory=list)


def _due(s: Session, now: datetime) -> EventDelivery | None:
    stmt = (
        select(EventDelivery)
        .join(WebhookEndpoint, WebhookEndpoint.id == EventDelivery.endpoint_id)
        .where(
            EventDelivery.status == DeliveryStatus.PENDING,
            EventDelivery.next_attempt_at <= now,
            WebhookEndpoint.enabled.is_(True),
        )
        .order_by(EventDelivery.next_attempt_at, EventDelivery.id)
        .limit(1)
        .with_for_update(of=EventDelivery, skip_locked=True)
        .options(joinedload(EventDelivery.event), joinedload(EventDelivery.endpoint))
    )
    return s.scalars(stmt).unique().first()


def body_of(event: OutboxEvent) -> str:
    return json.dumps(payload(event), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def attempt(
    s: Session,
    delivery: EventDelivery,
    *,
    now: datetime,
    policy: RetryPolicy,
    post: Poster,
    timeout: float,
) -> str:
    """Send one delivery (its row is locked); record the outcome. Returns the outcome."""
    event, endpoint = delivery.event, delivery.endpoint
    body = body_of(event)
    delivery.attempts += 1
    delivery.last_attempt_at = now
    try:
        signature = sign(signing_secrets(endpoint, now), event.event_id, now, body)
        headers = {
            "content-type": "application/json",
            "user-agent": "payments-console-webhooks/1",
            "webhook-id": event.event_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        }
        status, text = post(endpoint.url, body.encode(), headers, timeout)
        delivery.last_status_code = status
        delivery.last_response_excerpt = _excerpt(text)
        delivery.last_error = None if 200 <= status < 300 else f"HTTP {status}"
    except SecretUnavailable as exc:
        status = 0
        delivery.last_status_code = None
        delivery.last_response_excerpt = None
        delivery.last_error = str(exc)
    except requests.RequestException as exc:
        status = 0
        delivery.last_status_code = None
        delivery.last_response_excerpt = None
        delivery.last_error = f"{type(exc).__name__}: {exc}"[:1000]
    if 200 <= status < 300:
        delivery.status = DeliveryStatus.SUCCEEDED
        delivery.succeeded_at = now
        delivery.next_attempt_at = None
        DELIVERIES.labels("succeeded").inc()
        return "succeeded"
    next_at = now + policy.delay(delivery.attempts)
    if next_at - event.created_at > timedelta(seconds=policy.window_seconds):
        delivery.status = DeliveryStatus.FAILED
        delivery.next_attempt_at = None
        DELIVERIES.labels("failed").inc()
        return "failed"
    delivery.next_attempt_at = next_at
    DELIVERIES.labels("retry").inc()
    return "retry"


def _excerpt(text: str) -> str:
    clean = "".join(ch if ch.isprintable() else " " for ch in text)
    return clean[:EXCERPT]


def deliver_due(
    s: Session,
    *,
    now: datetime | None = None,
    limit: int = 100,
    post: Poster | None = None,
    policy: RetryPolicy | None = None,
    timeout: float | None = None,
) -> DeliveryReport:
    """Deliver up to `limit` due deliveries, one row (and one commit) at a time."""
    report = DeliveryReport()
    policy = policy or RetryPolicy.from_config()
    post = post or http_post
    timeout = timeout or float(current_app.config.get("WEBHOOK_TIMEOUT_SECONDS", 10))
    s.rollback()
    for _ in range(limit):
        at = now or utcnow()
        delivery = _due(s, at)
        if delivery is None:
            s.rollback()
            break
        report.scanned += 1
        try:
            outcome = attempt(s, delivery, now=at, policy=policy, post=post, timeout=timeout)
        except Exception as exc:
            s.rollback()
            report.errors += 1
            report.last_error = f"delivery {delivery.id}: {type(exc).__name__}: {exc}"[:1000]
            break
        line = f"{delivery.event.event_id} -> {delivery.endpoint.url}: {outcome}"
        if outcome != "succeeded":
            line += f" ({delivery.last_error})"
            report.last_error = f"{delivery.event.type} {delivery.event.event_id}: " + (
                delivery.last_error or ""
            )
        s.commit()
        report.lines.append(line)
        if outcome == "succeeded":
            report.acted += 1
        elif outcome == "retry":
            report.retried += 1
        else:
            report.failed += 1
            report.errors += 1
    return report


def redeliver(delivery: EventDelivery, now: datetime) -> None:
    """Send again now: a failed delivery gets a fresh retry window from this moment."""
    delivery.status = DeliveryStatus.PENDING
    delivery.next_attempt_at = now


# ------------------------------------------------------------------ the gauge


class FailedDeliveriesCollector(Collector):
    """`outbound_webhook_deliveries_failed`: failed deliveries nobody redelivered yet."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from flask import has_app_context

        from console import db

        # The app serving /metrics, when there is one (several apps live in one test process).
        app = current_app._get_current_object() if has_app_context() else self.app  # type: ignore[attr-defined]
        with app.app_context():
            s = db.session()
            n = s.scalar(
                select(func.count(EventDelivery.id)).where(
                    EventDelivery.status == DeliveryStatus.FAILED
                )
            )
            s.rollback()
        gauge = GaugeMetricFamily(
            "outbound_webhook_deliveries_failed",
            "Events the shop never acknowledged within the retry window",
        )
        gauge.add_metric([], float(n or 0))
        yield gauge


_collector: FailedDeliveriesCollector | None = None


def init_metrics(app: Any) -> None:
    global _collector  # noqa: PLW0603  (one registry per process)
    if _collector is None:
        _collector = FailedDeliveriesCollector(app)
        REGISTRY.register(_collector)
    else:
        _collector.app = app


def secret_fingerprint(secret: str) -> str:
    """A short, safe way to tell secrets apart on the page (never the secret itself)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:8]
