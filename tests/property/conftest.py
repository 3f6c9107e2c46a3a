"""Hypothesis settings and the 'nothing half-written' fingerprint for property tests.

Profiles: `ci` (the default, at least 2,000 cases in all) and `long` (ten
times as many): `HYPOTHESIS_PROFILE=long bin/test tests/property`.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from sqlalchemy import text

SCALE = 10 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 1
COMMON = {
    "deadline": None,
    "database": None,  # no .hypothesis directory in the work tree
    "derandomize": SCALE == 1,  # CI runs the same cases every time; `long` explores
    "suppress_health_check": [
        HealthCheck.function_scoped_fixture,  # one login and one set of targets per test
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
    "print_blob": True,
}
settings.register_profile("ci", **COMMON)
settings.register_profile("long", **COMMON)
settings.load_profile("long" if SCALE > 1 else "ci")

# Tables that may change on any request: the audit log (denials and failures are
# recorded by design), sign-in sessions (last seen), users (last login).
ALWAYS_ALLOWED = {"audit_entries", "audit_chain_head", "login_sessions", "users"}
_fingerprint_sql: dict[str, str] = {}


def fingerprint(s, *, allow: set[str] = frozenset()) -> dict[str, str]:
    """Row count and a digest of every row, per table (small test data: cheap)."""
    skip = ALWAYS_ALLOWED | set(allow) | {"alembic_version"}
    key = ",".join(sorted(skip))
    if key not in _fingerprint_sql:
        tables = [
            r[0]
            for r in s.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
            )
            if r[0] not in skip
        ]
        _fingerprint_sql[key] = " UNION ALL ".join(
            f"SELECT '{t}', count(*)::text || ':' || "
            f"md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {t} x"
            for t in tables
        )
    return dict(s.execute(text(_fingerprint_sql[key])).all())


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(t for t in after if before.get(t) != after[t])
