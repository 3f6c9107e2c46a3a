"""Schemathesis against the app (in-process WSGI) with a real API key.

Every operation of `/api/v1/openapi.json` gets generated requests; each
response must not be a server error and must match the documented status
codes, media types and schemas. Everything runs in the `app` fixture's
transaction, so what the generated requests write is rolled back.

(The operations are walked with `operation.as_strategy()` under Hypothesis
rather than `schemathesis.pytest.from_fixture`: the lazy fixture loader of
schemathesis 4.32 reads a pytest-internal attribute that pytest 9 removed.)
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.integrations.helpers import bearer, make_key


def checks():
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]


@pytest.mark.slow
def test_api_conforms_to_its_schema(app):
    token = make_key(app, name="schemathesis")
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 27  # nine record kinds: PUT, GET, batch
    statuses: dict[str, set[int]] = {}

    def walk(operation) -> None:
        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def conforms(case):
            response = case.call_and_validate(headers=bearer(token), checks=checks())
            statuses.setdefault(operation.label, set()).add(response.status_code)

        conforms()

    for operation in operations:
        walk(operation)
    assert len(statuses) == 27
    # Generated data reaches the upserts, not only the refusals.
    for label, seen in statuses.items():
        if label.startswith("POST"):
            assert 200 in seen, (label, seen)
    for kind in ("orders", "inventory-items", "coupons", "supplier-sync-runs"):
        assert 201 in statuses[f"PUT /api/v1/{kind}/{{external_id}}"], (kind, statuses)
