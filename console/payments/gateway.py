"""The Stripe gateway: the only module of the console that imports `stripe`.

It hands back plain dicts and raises `GatewayError`s that say what the caller
may do next: retry (429, 5xx, timeouts), or stop (invalid request, card
error). For calls that move money, a timeout or a 5xx means the outcome is
*unknown*: the caller keeps its attempt `in_flight` and re-issues the same
idempotency key later instead of assuming failure.

The retry policy lives here, once: a call that failed in a retryable way
(429, 5xx, a reset connection, a timeout) is tried again with the *same*
idempotency key, at most `STRIPE_MAX_ATTEMPTS` times, after an exponential
backoff with jitter (at least `Retry-After` on a 429), and never past
`STRIPE_CALL_DEADLINE_SECONDS`, which the configuration keeps below the web
worker's timeout: a request gives up cleanly (502, attempt kept in flight,
audit entry written) before gunicorn would kill it mid-call.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import stripe
from flask import current_app

from console.config import Settings

DEFAULT_TOLERANCE = 300
RETRY_BASE_SECONDS = 0.5
RETRY_CAP_SECONDS = 4.0
log = logging.getLogger(__name__)


@dataclass
class GatewayError(Exception):
    """A Stripe call that did not succeed, classified for the caller."""

    # rate_limited | unavailable | timeout | invalid | not_found | auth | card | idempotency
    kind: str
    message: str
    http_status: int | None = None
    code: str | None = None
    attempts: int = 1

    def __str__(self) -> str:
        tries = f" (after {self.attempts} attempts)" if self.attempts > 1 else ""
        return f"Stripe {self.kind}: {self.message}{tries}"

    @property
    def retryable(self) -> bool:
        return self.kind in ("rate_limited", "unavailable", "timeout")

    @property
    def outcome_unknown(self) -> bool:
        """True when Stripe may have acted although we got no answer."""
        return self.kind in ("unavailable", "timeout")


class SignatureError(Exception):
    """A webhook whose signature does not verify (or is too old)."""


def _classify(exc: stripe.StripeError) -> GatewayError:
    status = getattr(exc, "http_status", None)
    code = getattr(exc, "code", None)
    message = getattr(exc, "user_message", None) or str(exc) or type(exc).__name__
    if isinstance(exc, stripe.RateLimitError) or status == 429:
        return GatewayError("rate_limited", message, status, code)
    if isinstance(exc, stripe.APIConnectionError):
        kind = (
            "timeout" if "timed out" in str(exc).lower() or "timeout" in str(exc) else "unavailable"
        )
        return GatewayError(kind, message, status, code)
    if isinstance(exc, stripe.IdempotencyError):
        return GatewayError("idempotency", message, status, code)
    if isinstance(exc, stripe.CardError):
        return GatewayError("card", message, status, code)
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return GatewayError("auth", message, status, code)
    if isinstance(exc, stripe.InvalidRequestError):
        kind = "not_found" if status == 404 or code == "resource_missing" else "invalid"
        return GatewayError(kind, message, status, code)
    if (status is not None and status >= 500) or isinstance(exc, stripe.APIError):
        return GatewayError("unavailable", message, status, code)
    return GatewayError("invalid", message, status, code)


def _plain(obj: Any) -> dict[str, Any]:
    """A StripeObject as plain JSON-able data."""
    if hasattr(obj, "to_dict"):
        data: dict[str, Any] = obj.to_dict()
        return data
    return dict(obj)


class RateLimiter:
    """At most `per_second` calls per second from this process (sliding window)."""

    def __init__(self, per_second: float) -> None:
        self.per_second = per_second
        self._lock = threading.Lock()
        self._times: deque[float] = deque()

    def wait(self) -> None:
        if self.per_second <= 0:
            return
        while True:
            with self._lock:
                now = time.monotonic()
                while self._times and now - self._times[0] >= 1.0:
                    self._times.popleft()
                if len(self._times) < self.per_second:
                    self._times.append(now)
                    return
                pause = 1.0 - (now - self._times[0])
            time.sleep(max(pause, 0.001))


class StripeGateway:
    """Calls Stripe with one configured client; every POST takes an idempotency key."""

    def __init__(self, settings: Settings) -> None:
        base = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
        self.live = settings.stripe_api_key.startswith(("sk_live", "rk_live"))
        self.webhook_secret = settings.stripe_webhook_secret
        self.client = stripe.StripeClient(
            settings.stripe_api_key,
            base_addresses=base,  # type: ignore[arg-type]
            http_client=stripe.RequestsClient(timeout=settings.stripe_timeout_seconds),
            max_network_retries=0,  # retries are the caller's decision, with the same key
        )
        self.calls = 0
        self.limiter = RateLimiter(settings.stripe_max_requests_per_second)
        self.timeout = settings.stripe_timeout_seconds
        self.max_attempts = settings.stripe_max_attempts
        self.deadline = settings.stripe_call_deadline_seconds

    def _call(self, fn: Any, *args: Any, retry: bool = True, **kwargs: Any) -> Any:
        """Call Stripe; retry what may be retried, with the same arguments and key.

        `retry=False` for a POST without an idempotency key (only the demo's
        set-up calls): repeating it could create a second object.
        """
        give_up_at = time.monotonic() + self.deadline
        attempt = 0
        while True:
            attempt += 1
            self.limiter.wait()
            self.calls += 1
            try:
                return fn(*args, **kwargs)
            except stripe.StripeError as exc:
                error = _classify(exc)
                error.attempts = attempt
                pause = self._retry_pause(exc, error, attempt) if retry else None
                if pause is None or time.monotonic() + pause + self.timeout > give_up_at:
                    raise error from exc
                log.warning(
                    "Stripe %s on attempt %d of %d; retrying in %.2f s with the same key",
                    error.kind,
                    attempt,
                    self.max_attempts,
                    pause,
                )
                time.sleep(pause)

    def _retry_pause(
        self, exc: stripe.StripeError, error: GatewayError, attempt: int
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to stop now."""
        if not error.retryable or attempt >= self.max_attempts:
            return None
        headers = {str(k).lower(): str(v) for k, v in (getattr(exc, "headers", None) or {}).items()}
        if headers.get("stripe-should-retry") == "false":
            return None
        # Exponential backoff with jitter: half of it fixed, half random.
        backoff: float = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2.0 ** (attempt - 1))
        pause: float = backoff / 2 + random.uniform(0, backoff / 2)
        if error.kind == "rate_limited":
            with contextlib.suppress(ValueError):
                pause = max(pause, min(float(headers.get("retry-after", "")), RETRY_CAP_SECONDS))
        return pause

    # -- reads

    def retrieve_payment_intent(self, payment_intent_id: str) -> dict[str, Any]:
        return _plain(
            self._call(
                self.client.v1.payment_intents.retrieve,
                payment_intent_id,
                {"expand": ["latest_charge"]},
            )
        )

    def list_payment_intents(
        self, *, created_gte: int | None = None, created_lt: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every PaymentIntent in a window, 100 per call, newest first."""
        params: dict[str, Any] = {"limit": 100}
        created: dict[str, int] = {}
        if created_gte is not None:
            created["gte"] = created_gte
        if created_lt is not None:
            created["lt"] = created_lt
        if created:
            params["created"] = created
        yield from self._paginate(self.client.v1.payment_intents.list, params)

    def search_payment_intents(self, metadata: Mapping[str, str]) -> list[dict[str, Any]]:
        """PaymentIntents whose metadata has these values (Search API; one call, <= 100)."""
        terms = " AND ".join(
            f"metadata['{_search_quote(k)}']:'{_search_quote(v)}'" for k, v in metadata.items()
        )
        page = self._call(
            self.client.v1.payment_intents.search,
            {"query": terms, "limit": 100, "expand": ["data.latest_charge"]},
        )
        return [_plain(item) for item in page.data]

    def list_transfers(self, **filters: Any) -> Iterator[dict[str, Any]]:
        yield from self._paginate(self.client.v1.transfers.list, {"limit": 100, **filters})

    def _paginate(self, fn: Any, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        page = self._call(fn, params)
        while True:
            data = list(page.data)
            for item in data:
                yield _plain(item)
            if not page.has_more or not data:
                return
            page = self._call(fn, {**params, "starting_after": data[-1].id})

    def retrieve_account(self, account_id: str) -> dict[str, Any]:
        return _plain(self._call(self.client.v1.accounts.retrieve, account_id))

    # -- money movement (always with an idempotency key)

    def create_refund(
        self,
        *,
        payment_intent: str,
        amount: int,
        idempotency_key: str,
        metadata: Mapping[str, str],
        reason: str | None = None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "payment_intent": payment_intent,
            "amount": amount,
            "metadata": dict(metadata),
        }
        if reason:
            params["reason"] = reason
        return _plain(
            self._call(self.client.v1.refunds.create, params, {"idempotency_key": idempotency_key})
        )

    def create_transfer(
        self,
        *,
        amount: int,
        currency: str,
        destination: str,
        transfer_group: str,
        idempotency_key: str,
        metadata: Mapping[str, str],
    ) -> dict[str, Any]:
        params = {
            "amount": amount,
            "currency": currency.lower(),
            "destination": destination,
            "transfer_group": transfer_group,
            "metadata": dict(metadata),
        }
        return _plain(
            self._call(
                self.client.v1.transfers.create, params, {"idempotency_key": idempotency_key}
            )
        )

    # -- invoicing

    def send_invoice(
        self,
        *,
        invoice_ref: str,
        customer_email: str,
        amount: int,
        currency: str,
        description: str,
    ) -> dict[str, Any]:
        """Issue an invoice through Stripe Invoicing; keys per invoice make retries safe."""
        customer = self._call(
            self.client.v1.customers.create,
            {"email": customer_email, "metadata": {"invoice": invoice_ref}},
            {"idempotency_key": f"invoice-{invoice_ref}-customer"},
        )
        self._call(
            self.client.v1.invoice_items.create,
            {
                "customer": customer.id,
                "amount": amount,
                "currency": currency.lower(),
                "description": description,
            },
            {"idempotency_key": f"invoice-{invoice_ref}-item"},
        )
        invoice = self._call(
            self.client.v1.invoices.create,
            {
                "customer": customer.id,
                "description": description,
                "metadata": {"invoice": invoice_ref},
            },
            {"idempotency_key": f"invoice-{invoice_ref}-invoice"},
        )
        return _plain(invoice)

    # -- demo set-up (test mode only)

    def _refuse_live(self) -> None:
        if self.live:
            raise GatewayError("auth", "refusing to create demo objects with a live key")

    def create_test_payment(
        self, *, amount: int, currency: str, metadata: Mapping[str, str]
    ) -> dict[str, Any]:
        """A succeeded PaymentIntent paid with Stripe's test card (test mode only)."""
        self._refuse_live()
        pm = self._call(
            self.client.v1.payment_methods.create,
            retry=False,
            params={
                "type": "card",
                "card": {
                    "number": "4242424242424242",
                    "exp_month": 12,
                    "exp_year": 2034,
                    "cvc": "123",
                },
            },
        )
        pi = self._call(
            self.client.v1.payment_intents.create,
            retry=False,
            params={
                "amount": amount,
                "currency": currency.lower(),
                "payment_method": pm.id,
                "confirm": True,
                "metadata": dict(metadata),
            },
        )
        return _plain(pi)

    def create_connected_account(self, *, email: str, account_id: str | None) -> dict[str, Any]:
        """An Express account for a demo seller (the local double keeps `account_id`)."""
        self._refuse_live()
        params: dict[str, Any] = {"type": "express", "email": email}
        if account_id:
            params["id"] = account_id
        return _plain(self._call(self.client.v1.accounts.create, retry=False, params=params))

    # -- webhooks

    def verify_signature(
        self, payload: bytes, signature_header: str | None, tolerance: int = DEFAULT_TOLERANCE
    ) -> str:
        """Verify Stripe's signature on the raw body; return the body as text (not parsed).

        Parsing is the intake's job: it bounds depth, sizes and numbers first.
        """
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SignatureError("body is not UTF-8") from exc
        try:
            stripe.WebhookSignature.verify_header(
                text, signature_header or "", self.webhook_secret, tolerance
            )
        except stripe.SignatureVerificationError as exc:
            raise SignatureError(str(exc)) from exc
        return text


def _search_quote(value: str) -> str:
    """A value inside single quotes of Stripe's search query language."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def gateway() -> StripeGateway:
    """The app's gateway (one client per app)."""
    existing: StripeGateway | None = current_app.extensions.get("stripe_gateway")
    if existing is None:
        existing = StripeGateway(current_app.config["SETTINGS"])
        current_app.extensions["stripe_gateway"] = existing
    return existing
