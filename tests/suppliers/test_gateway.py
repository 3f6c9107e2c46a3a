"""Supplier settings and the gateway's error classes, against the real double."""

from __future__ import annotations

import time

import pytest

from console.config import ConfigError, load_settings
from console.suppliers.gateway import HttpSupplierGateway, SupplierError

DEMO = {"CONSOLE_ENV": "test", "DATABASE_URL": "postgresql://x@127.0.0.1/x"}


def test_supplier_settings_are_read_and_checked():
    settings = load_settings(
        {
            **DEMO,
            "SUPPLIER_API_BASE": "https://api.supplier.example/",
            "SUPPLIER_TIMEOUT_SECONDS": "2.5",
        }
    )
    assert settings.supplier_api_base == "https://api.supplier.example"
    assert settings.supplier_timeout_seconds == 2.5
    assert load_settings(DEMO).supplier_api_base is None
    assert load_settings(DEMO).supplier_timeout_seconds == 10.0
    for bad in ("soon", "0", "-1"):
        with pytest.raises(ConfigError, match="SUPPLIER_TIMEOUT_SECONDS"):
            load_settings({**DEMO, "SUPPLIER_TIMEOUT_SECONDS": bad})


def test_errors_say_whether_a_retry_may_help(supplier):
    gw = HttpSupplierGateway(supplier.url, timeout=1)
    cases = [
        ({"status": 502}, "unavailable", True),
        ({"status": 429}, "rate_limited", True),
        ({"bad_reply": True}, "bad_reply", True),
        ({"delay": 1.5}, "timeout", True),
        ({"status": 422}, "refused", False),
        ({"status": 401}, "auth", False),
    ]
    for fault, kind, retryable in cases:
        supplier.add_fault(path_prefix="/v1/orders", **fault)
        with pytest.raises(SupplierError) as caught:
            gw.forward_order("S", {"reference": "ORD-1", "lines": []}, idempotency_key="k-1")
        assert (caught.value.kind, caught.value.retryable) == (kind, retryable), fault
    supplier.add_fault(path_prefix="/v1/products", bad_reply=True)
    with pytest.raises(SupplierError, match="not JSON"):
        gw.list_products("S", 1)
    with pytest.raises(SupplierError) as caught:
        HttpSupplierGateway(None).list_products("S", 1)
    assert caught.value.kind == "not_configured" and not caught.value.retryable
    supplier.clear_faults()
    page = gw.list_products("S", 4)
    assert (page.page, page.pages, len(page.items)) == (4, 4, 30)


def test_the_same_key_with_other_contents_is_a_conflict(supplier):
    gw = HttpSupplierGateway(supplier.url, timeout=2)
    first = gw.forward_order("S", {"reference": "ORD-1", "lines": []}, idempotency_key="k-2")
    again = gw.forward_order("S", {"reference": "ORD-1", "lines": []}, idempotency_key="k-2")
    assert again.reference == first.reference and again.replayed and not first.replayed
    with pytest.raises(SupplierError) as caught:
        gw.forward_order("S", {"reference": "ORD-1", "lines": [1]}, idempotency_key="k-2")
    assert caught.value.kind == "conflict" and not caught.value.retryable
    assert len(supplier.orders()) == 1


def test_a_request_outliving_a_reset_stays_out_of_the_next_log(supplier):
    # A `delay` fault keeps the double's handler asleep after the client gave up; what
    # it logs when it wakes belongs to the test that sent it, not to the next one.
    gw = HttpSupplierGateway(supplier.url, timeout=0.3)
    supplier.add_fault(path_prefix="/v1/orders", delay=1.0)
    with pytest.raises(SupplierError):
        gw.forward_order("S", {"reference": "ORD-1", "lines": []}, idempotency_key="k-late")
    supplier.reset()
    time.sleep(1.2)
    assert [r for r in supplier.requests_log() if r["idempotency_key"] == "k-late"] == []
