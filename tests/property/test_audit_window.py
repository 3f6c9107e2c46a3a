"""Audit time windows: bounded in seq by the head's disorder, and still exact.

Entries are appended through the chain with their clocks out of order (as two
hosts with different clocks would append them). The head's `max_disorder`
(kept by the append trigger, migration 0012) must equal the largest amount an
entry's time was earlier than an entry's before it, and every window (since
and until, either alone, an empty one) walked page by page in both directions
must list exactly what the plain `ts >= since AND ts < until` lists.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from console import db
from console.audit import chain
from console.audit.models import AuditChainHead, AuditEntry
from console.audit.views import filtered
from console.db import utcnow
from console.pagination import SortOption, keyset_page
from tests.property.conftest import SCALE

SORTS = [SortOption("seq", "Sequence", AuditEntry.seq)]


def expected_disorder(s) -> timedelta:  # type: ignore[no-untyped-def]
    worst, latest = timedelta(0), None
    for ts in s.scalars(select(AuditEntry.ts).order_by(AuditEntry.seq)):
        if latest is not None:
            worst = max(worst, latest - ts)
        latest = ts if latest is None else max(latest, ts)
    return worst


def walk(s, args):  # type: ignore[no-untyped-def]
    stmt, _used, errors = filtered(args)
    assert not errors
    seqs: list[int] = []
    for _ in range(200):
        page = keyset_page(
            s, stmt, id_column=AuditEntry.seq, sort_options=SORTS, args=args, default_sort="seq"
        )
        seqs += [e.seq for e in page.rows]
        if not page.next_cursor:
            return seqs
        args = {**args, "after": page.next_cursor}
    raise AssertionError("the pages did not end")


@settings(max_examples=30 * SCALE)
@given(
    offsets=st.lists(st.integers(-90, 90), min_size=1, max_size=20),
    since=st.none() | st.integers(-100, 100),
    until=st.none() | st.integers(-100, 100),
    limit=st.integers(1, 4),
)
def test_time_windows_list_exactly_the_entries_in_them(app, offsets, since, until, limit):
    base = utcnow().replace(second=0, microsecond=0) - timedelta(days=1)
    with app.app_context(), pytest.MonkeyPatch.context() as mp:
        s = db.session()
        nested = s.begin_nested()
        for n, minutes in enumerate(offsets):
            # Seconds apart, so ties in time are rare but possible across minutes.
            at = base + timedelta(minutes=minutes, seconds=n % 3)
            mp.setattr(chain, "utcnow", lambda at=at: at)
            chain.append(s, action="tests:window", outcome="success", actor=None)
        s.flush()
        head = s.get(AuditChainHead, 1)
        s.refresh(head)
        assert head.max_disorder == expected_disorder(s)
        assert head.max_ts == s.scalar(select(AuditEntry.ts).order_by(AuditEntry.ts.desc()))

        args: dict[str, str] = {"limit": str(limit)}
        cond = []
        if since is not None:
            args["since"] = (base + timedelta(minutes=since)).isoformat()
            cond.append(AuditEntry.ts >= base + timedelta(minutes=since))
        if until is not None:
            args["until"] = (base + timedelta(minutes=until)).isoformat()
            cond.append(AuditEntry.ts < base + timedelta(minutes=until))
        for direction in ("desc", "asc"):
            order = AuditEntry.seq.desc() if direction == "desc" else AuditEntry.seq.asc()
            want = list(s.scalars(select(AuditEntry.seq).where(*cond).order_by(order)))
            assert walk(s, {**args, "dir": direction}) == want, (args, direction)
        nested.rollback()
