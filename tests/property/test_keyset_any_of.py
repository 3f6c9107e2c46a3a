"""keyset_page's `any_of` (one ordered index range per condition, then the union cut to
the page) pages exactly as the plain `WHERE a OR b`: every row once, in the same order,
forwards and backwards, whatever the overlap of the conditions and the ties on the sort.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import or_, select

from console import db
from console.db import utcnow
from console.orders.models import Order, OrderStatus
from console.pagination import SortOption, keyset_page
from tests.property.conftest import SCALE

SORTS = [
    SortOption("created", "Age", Order.created_at),
    SortOption("amount", "Amount", Order.amount),
    SortOption("id", "Id", Order.id),
]
row_st = st.tuples(st.integers(0, 3), st.integers(1, 4), st.integers(0, 3))  # email, amount, age


def walk(s, base, any_of, args, key):  # type: ignore[no-untyped-def]
    """Every page from the first, following `key` ("after" or "before")."""
    ids: list[int] = []
    for _ in range(100):
        page = keyset_page(
            s, base, any_of=any_of, id_column=Order.id, sort_options=SORTS, args=args,
            default_sort="created",
        )  # fmt: skip
        ids = ids + [o.id for o in page.rows] if key == "after" else [o.id for o in page.rows] + ids
        cursor = page.next_cursor if key == "after" else page.prev_cursor
        if not cursor:
            return ids
        args = {**{k: v for k, v in args.items() if k not in ("after", "before")}, key: cursor}
    raise AssertionError("the pages did not end")


@settings(max_examples=25 * SCALE)
@given(
    rows=st.lists(row_st, max_size=16),
    emails=st.sets(st.integers(0, 3), max_size=3),
    amounts=st.sets(st.integers(1, 4), max_size=3),
    limit=st.integers(1, 4),
)
def test_any_of_pages_like_the_plain_or(app, rows, emails, amounts, limit):
    with app.app_context():
        s = db.session()
        now = utcnow()
        prefix = f"ORD-ANY-{now.timestamp():.6f}-"  # this example's orders only
        for n, (email, amount, age) in enumerate(rows):
            s.add(
                Order(
                    external_id=f"{prefix}{n}",
                    status=OrderStatus.PENDING,
                    customer_email=f"c{email}@example.com",
                    amount=amount * 100,
                    currency="EUR",
                    created_at=now - timedelta(hours=age),
                )
            )
        s.flush()
        any_of = [
            Order.customer_email.in_([f"c{e}@example.com" for e in sorted(emails)] or [""]),
            Order.amount.in_([a * 100 for a in sorted(amounts)] or [0]),
        ]
        mine = Order.external_id.startswith(prefix)
        base = select(Order).where(mine)
        for sort in SORTS:
            for direction in ("asc", "desc"):
                order_by = (
                    (sort.column.asc(), Order.id.asc())
                    if direction == "asc"
                    else (sort.column.desc(), Order.id.desc())
                )
                want = list(
                    s.scalars(select(Order.id).where(mine, or_(*any_of)).order_by(*order_by))
                )
                args = {"sort": sort.key, "dir": direction, "limit": str(limit)}
                forwards = walk(s, base, any_of, args, "after")
                assert forwards == want, (sort.key, direction)
                if len(want) > limit:
                    # Back from the last page: the cursor of its first row, as the page links it.
                    last_edge = keyset_page(
                        s, base, any_of=any_of, id_column=Order.id, sort_options=SORTS,
                        args={**args, "limit": "1", "before": _edge(s, sort, want[-1])},
                        default_sort="created",
                    )  # fmt: skip
                    assert [o.id for o in last_edge.rows] == [want[-2]], (sort.key, direction)
        s.rollback()


def _edge(s, sort, order_id):  # type: ignore[no-untyped-def]
    from console.pagination import _encode

    order = s.get(Order, order_id)
    return _encode(sort.key, getattr(order, sort.column.key), order.id)
