"""Audit tests verify as an auditor would: against the fingerprint they hold."""

from __future__ import annotations

import pytest

PIN: dict[str, str] = {}


@pytest.fixture(autouse=True)
def auditor_pin(session_app) -> str:
    """The signing key's fingerprint, as the auditor holds it (not read from a bundle)."""
    from console.audit.export import fingerprint, load_signing_key

    with session_app.app_context():
        key = load_signing_key(session_app.config["SETTINGS"], session_app.instance_path)
    PIN["fingerprint"] = fingerprint(key.public_key())
    return PIN["fingerprint"]
