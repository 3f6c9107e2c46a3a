"""Template helpers that cache per request must give exactly what Flask would."""

from __future__ import annotations

from flask import url_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from console.templating import page_url_for

ids = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20)


@given(first=ids, second=ids)
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_page_url_for_equals_url_for(app, first, second):
    """Every row's link as url_for builds it, the first row's and the second's alike."""
    with app.test_request_context("/orders/stuck?reason=x"):
        for value in (first, second):
            assert page_url_for("orders.detail", external_id=value) == url_for(
                "orders.detail", external_id=value
            )


def test_page_url_for_falls_back_where_a_placeholder_cannot_stand(app):
    with app.test_request_context("/"):
        # an int converter, a query string, no values, an external URL
        cases = [
            ("audit.entry", {"seq": 12}),
            ("orders.stuck", {"reason": "amount mismatch", "q": "a&b"}),
            ("orders.stuck", {}),
            ("orders.detail", {"external_id": "ORD-1", "_external": True}),
            ("static", {"filename": "console.css"}),
        ]
        for _ in range(2):  # the second call reads what the first cached
            for endpoint, values in cases:
                assert page_url_for(endpoint, **values) == url_for(endpoint, **values)


@given(
    seqs=st.lists(st.integers(0, 2**63 - 1), min_size=1, max_size=3),
    texts=st.lists(
        ids | st.sampled_from(["__console_url_0__", "7123456789000000000", "%2F", "a/b"]),
        min_size=1,
        max_size=3,
    ),
)
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_page_url_for_fills_int_and_text_values_as_url_for_writes_them(app, seqs, texts):
    """An int converter's route (the audit entries) from its cached pieces, and text that
    looks like a placeholder, is still exactly url_for's URL."""
    with app.test_request_context("/audit"):
        for seq in seqs:
            assert page_url_for("audit.entry", seq=seq) == url_for("audit.entry", seq=seq)
        for text in texts:
            assert page_url_for("orders.detail", external_id=text) == url_for(
                "orders.detail", external_id=text
            )
        # Two values, one of them an int, through one route (the action confirm step).
        for seq, text in zip(seqs, texts, strict=False):
            assert page_url_for("actions.act", name=text, target_id=seq) == url_for(
                "actions.act", name=text, target_id=seq
            )
