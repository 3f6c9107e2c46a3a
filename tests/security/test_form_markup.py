"""Confirm forms and error dialogs as a user sees them (issue 16's walk findings)."""

from __future__ import annotations

import re

from tests.actions.test_framework import TARGET_FACTORIES, production_actions


def test_no_input_says_aria_describedby_none_and_required_fields_are_marked(app, auth, client):
    """Figure: on every action's confirm page, 0 `aria-describedby="None"`, every required input marked."""
    from console import db

    auth.as_role("admin")
    with app.app_context():
        s = db.session()
        targets = {kind: factory(s) for kind, factory in TARGET_FACTORIES.items()}
        s.commit()
    checked = 0
    for action in production_actions():
        html = client.get(f"/actions/{action.name}/{targets[action.target_type]}").get_data(
            as_text=True
        )
        assert 'aria-describedby="None"' not in html, action.name
        if 'name="idempotency_key"' not in html:
            continue  # the precondition does not hold for this target: no form shown
        tags = re.findall(r"<(?:input|textarea|select)\b[^>]*>", html)
        required = [t for t in tags if re.search(r"\srequired(?:[\s>=]|$)", t)]
        assert required, action.name  # the reason, at least
        for tag in required:
            field_id = re.search(r'\bid="([^"]+)"', tag).group(1)
            label = re.search(rf'<label for="{field_id}">(.*?)</label>', html, re.S)
            assert label and "*" in label.group(1), (action.name, field_id)
        checked += len(required)
    assert checked >= 10  # forms shown for the matrix targets (stale ones show none)


def test_htmx_error_dialog_shows_the_request_id_it_asks_for(auth, client):
    """Figure: an htmx error fragment shows the same request id as its X-Request-Id header."""
    auth.as_role("support")
    resp = client.get("/orders/ORD-NOPE", headers={"HX-Request": "true"})
    assert resp.status_code == 404
    html = resp.get_data(as_text=True)
    assert f"Request id: <code>{resp.headers['X-Request-Id']}</code>" in html
