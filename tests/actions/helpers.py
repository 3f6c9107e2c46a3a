"""Form helpers for driving the confirm step like a browser."""

from __future__ import annotations

import html
import re
from typing import Any

from flask.testing import FlaskClient

_NAMES = "csrf_token|idempotency_key|next|seen"
_INPUT = re.compile(rf'<input[^>]*name="({_NAMES})"[^>]*value="([^"]*)"')
_INPUT_REV = re.compile(rf'<input[^>]*value="([^"]*)"[^>]*name="({_NAMES})"')


def hidden_fields(page: str) -> dict[str, str]:
    found = {m.group(1): html.unescape(m.group(2)) for m in _INPUT.finditer(page)}
    found.update({m.group(2): html.unescape(m.group(1)) for m in _INPUT_REV.finditer(page)})
    return found


def confirm_form(client: FlaskClient, name: str, target_id: str) -> dict[str, str]:
    resp = client.get(f"/actions/{name}/{target_id}")
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    fields = hidden_fields(resp.get_data(as_text=True))
    assert "csrf_token" in fields and "idempotency_key" in fields, fields
    return fields


def submit(
    client: FlaskClient,
    name: str,
    target_id: str,
    *,
    reason: str = "Customer called, see ticket",
    htmx: bool = False,
    form: dict[str, str] | None = None,
    **extra: Any,
) -> Any:
    data = dict(form or confirm_form(client, name, target_id))
    data.setdefault("reason", reason)
    data.update({k: str(v) for k, v in extra.items()})
    headers = {"HX-Request": "true"} if htmx else {}
    return client.post(f"/actions/{name}/{target_id}", data=data, headers=headers)
