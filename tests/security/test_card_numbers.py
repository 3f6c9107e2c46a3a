"""No card numbers at rest: free text with a PAN is refused, the chain masks what reaches it."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from wtforms import StringField, TextAreaField

from console import db
from console.actions.framework import REGISTRY
from console.actions.models import IdempotencyRecord
from console.audit.models import AuditEntry
from console.cardnumbers import contains_pan, mask_pans
from tests.actions.test_framework import TARGET_FACTORIES, production_actions

PANS = [
    "4111111111111111",  # Visa test number, plain
    "4111 1111 1111 1111",  # grouped with spaces
    "4111-1111-1111-1111",  # grouped with dashes
    "378282246310005",  # Amex, 15 digits
    "6011 0009 9013 9424",  # Discover
    "6222 0200 0000 0000 000",  # 19 digits (UnionPay-style)
]
NOT_PANS = [
    "4111 1111 1111 1112",  # fails Luhn
    "411111111111",  # 12 digits
    "41111111111111111111",  # 20 digits in one run
    "ORD-2026-000123",
    "pi_3MtwBwLkdIwHu7ix28a3tqPa",
    "1767225600",  # a Unix time
    # SHA-256 hashes holding a Luhn-valid run of 17 digits (an audit checkpoint's hash
    # was masked in its log line): hex tokens of 32+ characters are not card numbers.
    "16ca25b8dc33ae2b9cb7bd5d18c24580903116384291cefa0c9c9daeed199795",
    "hash=16ca25b8dc33ae2b9cb7bd5d18c24580903116384291cefa0c9c9daeed199795.",
    "f00d24580903116384291cefa0c9c9da",  # 32 hex characters
]


def test_the_hash_case_is_a_luhn_valid_run():
    # The hex tokens above are not waved through by accident: their digits would be a PAN.
    assert contains_pan("c 24580903116384291 c") and contains_pan("card24580903116384291")
    # Shorter hex tokens, and a PAN glued to a word, are still card numbers.
    assert contains_pan("d18c24580903116384291cefa")  # 25 hex characters: not a hash
    assert contains_pan("card4111111111111111exp") and contains_pan("4111111111111111abcdef")


@pytest.mark.parametrize("text", PANS)
def test_pans_are_found_and_masked_to_the_last_four(text):
    """Figure: 6 of 6 PAN spellings found; masking keeps only the last 4 digits."""
    assert contains_pan(f"card {text} was charged")
    masked = mask_pans(f"card {text} was charged")
    assert not contains_pan(masked)
    digits = [c for c in masked if c.isdigit()]
    assert "".join(digits) == text.replace(" ", "").replace("-", "")[-4:]


@pytest.mark.parametrize("text", NOT_PANS)
def test_numbers_that_are_not_pans_pass(text):
    """Figure: 0 of 6 ordinary numbers (Luhn failure, 12 or 20 digits, ids) refused."""
    assert not contains_pan(f"see {text} please")


def free_text_fields(app, action) -> list[str]:
    with app.test_request_context():
        form = action.form(meta={"csrf": False})
        return [
            f.name
            for f in form
            if isinstance(f, StringField | TextAreaField) and f.type != "HiddenField"
        ]


def counts(app) -> tuple[int, int]:
    with app.app_context():
        s = db.session()
        return (
            s.scalar(select(func.count()).select_from(AuditEntry)) or 0,
            s.scalar(select(func.count()).select_from(IdempotencyRecord)) or 0,
        )


def test_every_free_text_field_of_every_action_refuses_a_pan(app, auth, client):
    """Figure: every text field of every declared action: 422, clear message, 0 rows stored
    but the refusal's audit entry, which holds no card number."""
    auth.as_role("admin")
    with app.app_context():
        s = db.session()
        targets = {kind: factory(s) for kind, factory in TARGET_FACTORIES.items()}
        s.commit()
    csrf = auth.csrf_token()
    checked = 0
    for action in production_actions():
        fields = free_text_fields(app, action)
        assert "reason" in fields and "ticket" in fields, action.name
        for i, name in enumerate(fields):
            before = counts(app)
            data = {
                "csrf_token": csrf,
                "idempotency_key": f"pan-{action.name.replace(':', '-')}-{i:04d}-abcdef",
                "reason": "Customer phoned about a double charge",
                "ticket": "OPS-1",
            }
            data[name] = f"card 4111 1111 1111 1111 {data.get(name, 'x')}"[:60]
            resp = client.post(f"/actions/{action.name}/{targets[action.target_type]}", data=data)
            assert resp.status_code == 422, (action.name, name, resp.status_code)
            assert "looks like a card number" in resp.get_data(as_text=True), (action.name, name)
            # Nothing of the action was stored; the refusal itself is one audit entry
            # (issue 12.9), with the card number masked (asserted below).
            entries, keys = counts(app)
            assert (entries, keys) == (before[0] + 1, before[1]), (action.name, name)
            checked += 1
    assert checked >= 2 * len(production_actions())
    with app.app_context():
        canon = db.session().scalars(select(AuditEntry.canonical)).all()
        assert not any("4111" in c and contains_pan(c) for c in canon)


def test_control_characters_in_free_text_are_refused(app, auth, client):
    """Figure: NUL and ANSI escape in a reason give 422; only the refusal is stored, escaped."""
    auth.as_role("support")
    with app.app_context():
        s = db.session()
        order_id = TARGET_FACTORIES["order"](s)
        s.commit()
    csrf = auth.csrf_token()
    for i, bad in enumerate(("null \x00 byte in the note", "escape \x1b[31mred\x1b[0m here")):
        before = counts(app)
        resp = client.post(
            f"/actions/orders:note:add/{order_id}",
            data={
                "csrf_token": csrf,
                "idempotency_key": f"ctl-note-{i:04d}-abcdefabcdef",
                "reason": bad,
            },
        )
        assert resp.status_code == 422
        assert "control characters" in resp.get_data(as_text=True)
        assert counts(app) == (before[0] + 1, before[1])  # only the refusal's audit entry
    with app.app_context():
        canon = db.session().scalars(select(AuditEntry.canonical)).all()
        assert not any("\x00" in c or "\x1b" in c for c in canon)


def test_pan_in_a_crafted_url_never_reaches_the_chain(app, auth, client):
    """Figure: a denial audited for /actions/<refund>/<PAN> holds the last 4 digits only."""
    auth.as_role("support")  # may not refund: the attempt is audited as denied
    resp = client.get("/actions/orders:order:refund/4111111111111111")
    assert resp.status_code == 403
    with app.app_context():
        entry = (
            db.session()
            .scalars(
                select(AuditEntry).where(AuditEntry.outcome == "denied").order_by(AuditEntry.seq)
            )
            .all()[-1]
        )
        assert entry.target_id == "************1111"
        assert "4111111111111111" not in entry.canonical


def test_registry_actions_all_use_the_shared_form():
    """Figure: every declared action's form derives from ActionForm (the shared check)."""
    from console.actions.framework import ActionForm

    assert all(issubclass(a.form, ActionForm) for a in REGISTRY.values())
