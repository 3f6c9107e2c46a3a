"""db.one_of: the same rows as `in_`, with one array parameter instead of one per value."""

from __future__ import annotations

from sqlalchemy import event, select

from console import db
from console.db import one_of
from console.orders.models import Order
from tests.factories import make_order


def test_one_of_finds_what_in_finds(app):
    with app.app_context():
        s = db.session()
        orders = [make_order(s) for _ in range(4)]
        s.flush()
        ids = [o.id for o in orders]
        externals = [o.external_id for o in orders]
        cases = [[], ids[:1], ids[1:3], [*ids, -1], [ids[0], ids[0]]]
        for values in cases:
            want = set(s.scalars(select(Order.id).where(Order.id.in_(values))))
            assert set(s.scalars(select(Order.id).where(one_of(Order.id, values)))) == want
        # Text columns, and a generator (read once).
        got = s.scalars(select(Order.id).where(one_of(Order.external_id, iter(externals[:2]))))
        assert set(got) == set(ids[:2])
        # One parameter however many values.
        seen: list[dict] = []
        engine = s.get_bind()

        def params(_conn, _cursor, _statement, parameters, *_rest):  # type: ignore[no-untyped-def]
            seen.append(parameters)

        event.listen(engine, "before_cursor_execute", params)
        try:
            s.scalars(select(Order.id).where(one_of(Order.id, range(1, 500)))).all()
        finally:
            event.remove(engine, "before_cursor_execute", params)
        assert len(seen[-1]) == 1


def test_a_locking_read_returns_the_locked_row_not_what_was_read_before(
    committed_app, pg_superuser_url
):
    import psycopg

    from console.orders.models import OrderStatus
    from tests.conftest import libpq

    with committed_app.app_context():
        s = db.session()
        order_id = make_order(s, status=OrderStatus.PAID).id
        s.commit()
        seen = s.get(Order, order_id)  # read (and kept) before someone else's change
        assert seen.status == OrderStatus.PAID
        with psycopg.connect(libpq(pg_superuser_url), autocommit=True) as other:
            other.execute("UPDATE orders SET status = 'refunded' WHERE id = %s", (order_id,))
        locked = s.scalar(select(Order).where(Order.id == order_id).with_for_update())
        assert locked is seen and locked.status == OrderStatus.REFUNDED
        s.commit()  # the lock goes; the session keeps its objects (expire_on_commit off)
        # Session.get with a lock too; a plain read keeps what the session has.
        with psycopg.connect(libpq(pg_superuser_url), autocommit=True) as other:
            other.execute("UPDATE orders SET status = 'cancelled' WHERE id = %s", (order_id,))
        assert s.scalar(select(Order).where(Order.id == order_id)).status == OrderStatus.REFUNDED
        assert s.get(Order, order_id, with_for_update=True).status == OrderStatus.CANCELLED
        s.rollback()
