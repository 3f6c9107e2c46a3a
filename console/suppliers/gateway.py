"""The supplier gateway: the only module of the console that calls the supplier's API.

The rest of the console sees two calls, `list_products` (one catalogue page)
and `forward_order` (hand one paid order to the supplier), plain dataclasses
back, and `SupplierError`s that say what the caller may do next: retry
(`retryable`: timeouts, 5xx, 429, an unreadable answer) or stop and ask a
person (refused, conflict, auth, not configured).

Every order carries an idempotency key (`Idempotency-Key` header), so a
retry after a timeout, a double click or two people forwarding the same
order give the supplier one order: it answers a repeated key with the order
it already has.

HTTP contract (what `devtools/supplier_double.py` implements):

    GET  {base}/v1/products?supplier=NAME&page=N&per_page=50
         -> {"page": N, "pages": 4, "catalog_version": "...",
             "items": [{"sku": "...", "name": "...", "available": 12}, ...]}
    POST {base}/v1/orders   (JSON body; header Idempotency-Key)
         -> 201 {"id": "SUP-...", "status": "accepted", "reference": "ORD-..."}
            200 + "Idempotent-Replayed: true" for a key it has seen
            409 for a key it has seen with different contents
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from flask import current_app

from console.config import Settings

PER_PAGE = 50

RETRYABLE = frozenset({"timeout", "unavailable", "bad_reply", "rate_limited"})


@dataclass
class SupplierError(Exception):
    """A supplier call that did not succeed, classified for the caller."""

    # timeout | unavailable | bad_reply | rate_limited | refused | conflict | auth
    # | not_found | not_configured
    kind: str
    message: str
    http_status: int | None = None

    def __str__(self) -> str:
        return self.message

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE

    @property
    def outcome_unknown(self) -> bool:
        """True when the supplier may have acted although we got no usable answer."""
        return self.kind in ("timeout", "bad_reply", "unavailable")


@dataclass(frozen=True)
class ProductPage:
    page: int
    pages: int
    items: list[dict[str, Any]] = field(default_factory=list)
    catalog_version: str | None = None


@dataclass(frozen=True)
class ForwardedOrder:
    reference: str
    status: str
    replayed: bool


class SupplierGateway(Protocol):
    """What the console needs from a supplier."""

    timeout: float

    def list_products(self, supplier: str, page: int) -> ProductPage: ...

    def forward_order(
        self, supplier: str, order: Mapping[str, Any], *, idempotency_key: str
    ) -> ForwardedOrder: ...


class HttpSupplierGateway:
    """The supplier's JSON API over HTTP, with a timeout on every call and no retries.

    Retrying is the caller's decision (with the same idempotency key), as for Stripe.
    """

    def __init__(
        self, base_url: str | None, *, timeout: float = 10.0, api_key: str | None = None
    ) -> None:
        self.base_url = (base_url or "").rstrip("/") or None
        self.timeout = timeout
        self.api_key = api_key
        self.calls = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpSupplierGateway:
        return cls(
            settings.supplier_api_base,
            timeout=settings.supplier_timeout_seconds,
            api_key=settings.supplier_api_key,
        )

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[dict[str, Any], requests.Response]:
        if not self.base_url:
            raise SupplierError(
                "not_configured",
                "the supplier API is not configured (set SUPPLIER_API_BASE)",
            )
        sent = {"Accept": "application/json", **(headers or {})}
        if self.api_key:
            sent["Authorization"] = f"Bearer {self.api_key}"
        host = urlsplit(self.base_url).netloc
        self.calls += 1
        try:
            resp = requests.request(
                method,
                f"{self.base_url}{path}",
                params=dict(params or {}),
                json=dict(body) if body is not None else None,
                headers=sent,
                timeout=self.timeout,
            )
        except requests.exceptions.ConnectTimeout:
            raise SupplierError(
                "unavailable", f"could not connect to the supplier API at {host} (connect timeout)"
            ) from None
        except requests.Timeout:
            raise SupplierError(
                "timeout", f"the supplier API did not answer within {self.timeout:g} s"
            ) from None
        except requests.ConnectionError:
            raise SupplierError(
                "unavailable",
                f"no answer from the supplier API at {host} (connection refused or dropped)",
            ) from None
        status = resp.status_code
        if status >= 400:
            raise _classify(status, _error_text(resp))
        try:
            data = resp.json()
        except ValueError:
            raise SupplierError(
                "bad_reply",
                f"the supplier API answered HTTP {status} with a body that is not JSON",
                status,
            ) from None
        if not isinstance(data, dict):
            raise SupplierError(
                "bad_reply", f"the supplier API answered HTTP {status} with unexpected JSON", status
            )
        return data, resp

    def list_products(self, supplier: str, page: int) -> ProductPage:
        data, resp = self._request(
            "GET", "/v1/products", params={"supplier": supplier, "page": page, "per_page": PER_PAGE}
        )
        items = data.get("items")
        pages = data.get("pages")
        if (
            data.get("page") != page
            or not isinstance(pages, int)
            or pages < 1
            or not isinstance(items, list)
            or not all(isinstance(i, dict) and isinstance(i.get("sku"), str) for i in items)
        ):
            raise SupplierError(
                "bad_reply",
                f"the supplier API answered page {page} with a catalogue page we cannot read",
                resp.status_code,
            )
        version = data.get("catalog_version")
        return ProductPage(
            page=page,
            pages=pages,
            items=[
                {
                    "sku": str(i["sku"])[:64],
                    "name": str(i.get("name") or "")[:255],
                    "available": int(i.get("available") or 0),
                }
                for i in items
            ],
            catalog_version=str(version)[:64] if version is not None else None,
        )

    def forward_order(
        self, supplier: str, order: Mapping[str, Any], *, idempotency_key: str
    ) -> ForwardedOrder:
        data, resp = self._request(
            "POST",
            "/v1/orders",
            body={**order, "supplier": supplier},
            headers={"Idempotency-Key": idempotency_key},
        )
        reference = data.get("id")
        if not isinstance(reference, str) or not reference:
            raise SupplierError(
                "bad_reply",
                f"the supplier API answered HTTP {resp.status_code} without an order reference",
                resp.status_code,
            )
        return ForwardedOrder(
            reference=reference[:128],
            status=str(data.get("status") or "accepted"),
            replayed=resp.headers.get("Idempotent-Replayed", "").lower() == "true",
        )


def _error_text(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or "")[:300]
        if err:
            return str(err)[:300]
    return ""


def _classify(status: int, text: str) -> SupplierError:
    said = f": {text}" if text else ""
    if status == 429:
        return SupplierError("rate_limited", f"the supplier API is rate limiting us{said}", status)
    if status >= 500:
        return SupplierError("unavailable", f"HTTP {status} from the supplier API{said}", status)
    if status in (401, 403):
        return SupplierError(
            "auth", f"the supplier API refused our credentials (HTTP {status}){said}", status
        )
    if status == 404:
        return SupplierError("not_found", f"the supplier API has no such resource{said}", status)
    if status == 409:
        return SupplierError(
            "conflict",
            "the supplier already has an order under this idempotency key with different "
            f"contents{said}",
            status,
        )
    return SupplierError("refused", f"the supplier API refused (HTTP {status}){said}", status)


def supplier_gateway() -> SupplierGateway:
    """The app's supplier gateway (one per app)."""
    existing: SupplierGateway | None = current_app.extensions.get("supplier_gateway")
    if existing is None:
        existing = HttpSupplierGateway.from_settings(current_app.config["SETTINGS"])
        current_app.extensions["supplier_gateway"] = existing
    return existing
