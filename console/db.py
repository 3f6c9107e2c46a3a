"""Database plumbing: the declarative base, column types, sessions, row locks.

Plain SQLAlchemy 2 (no Flask-SQLAlchemy): one engine per app, one session per
app context, committed only by services (models never commit).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from flask import Flask, current_app, g
from sqlalchemy import (
    ColumnElement,
    DateTime,
    Dialect,
    Engine,
    Enum,
    MetaData,
    any_,
    cast,
    create_engine,
    event,
    literal,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

T = TypeVar("T")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1


def parse_id(raw: str, *, big: bool = False) -> int | None:
    """A row id typed in a URL: digits within the column's range, else None (a 404).

    An id past the column's range would reach PostgreSQL as an error (a 500);
    it simply names no row.
    """
    if not raw.isascii() or not raw.isdigit():
        return None
    value = int(raw)
    return value if 1 <= value <= (INT8_MAX if big else INT4_MAX) else None


def utcnow() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def one_of(column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """`column = ANY(:values)`: what `column.in_(values)` means, as one array parameter.

    A page's prefetch asks for the 50 rows' children by id; `in_` sends one
    bind parameter per id, expanded into the statement on every execution,
    which cost more than PostgreSQL's own work (0.7 of 3.2 ms for a 100-id
    lookup, issue 15). Same answers: nothing for an empty list, NULL never
    matches.
    """
    condition: ColumnElement[bool] = column == any_(cast(literal(list(values)), ARRAY(column.type)))
    return condition


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use console.db.utcnow() or attach UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is UTC:  # the console's connections run in UTC (make_engine)
            return value
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONType = JSONB()


class Base(DeclarativeBase):
    """Declarative base with the project's type map and naming convention."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
        list[Any]: JSONType,
        list[str]: JSONType,
        enum.Enum: Enum(
            enum.Enum,
            native_enum=False,
            length=32,
            values_callable=lambda e: [m.value for m in e],
            validate_strings=True,
        ),
    }


def make_engine(url: str) -> Engine:
    """Create the PostgreSQL engine the console runs on.

    JIT is off for the console's connections: compiling a plan costs an OLTP
    page 100-200 ms and saves nothing on queries that read 50 rows through an
    index.

    Plans are custom, never generic: psycopg prepares a statement after five runs, and
    a generic plan of `status = $1` cannot use a partial index whose predicate says
    `status = 'paid'` (the queue pages and counts depend on them). Planning these
    queries costs well under a millisecond.

    The session time zone is UTC, so psycopg returns `datetime.UTC` itself and a
    timestamp needs no conversion per value per row (`UTCDateTime`).
    """
    engine = create_engine(
        url,
        pool_size=10,
        max_overflow=20,
        connect_args={"options": "-c jit=off -c plan_cache_mode=force_custom_plan -c timezone=UTC"},
    )
    _ping_when_idle(engine)
    return engine


PING_AFTER_IDLE_SECONDS = 2.0


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection before use only if it sat idle (SQLAlchemy's pre-ping, lazier).

    `pool_pre_ping` pings on every checkout: a round trip and a PostgreSQL
    wake-up per request, a sixth of a webhook intake's CPU on 2 cores (issue
    15). A connection used within the last PING_AFTER_IDLE_SECONDS is very
    probably alive; one idle longer (after a database restart, a network
    cut, an idle timeout) is pinged, and a dead one is replaced before the
    request sees it. A restart within those seconds fails the requests in
    flight anyway; the first error on a dead connection makes SQLAlchemy
    drop the whole pool's older connections.
    """

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return  # a brand-new connection, or one in use a moment ago
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise DisconnectionError("pooled connection is dead") from exc
        if not alive:
            raise DisconnectionError("pooled connection is dead")


@event.listens_for(Session, "do_orm_execute")
def _locked_reads_are_fresh(state: Any) -> None:
    """A `SELECT ... FOR UPDATE` refreshes the objects it returns.

    The ORM keeps an object's loaded values when a later query returns the same row,
    so an order read earlier in the transaction (a snapshot for the audit, a list)
    kept its pre-lock state through the `FOR UPDATE` that was meant to decide on the
    locked one: a refund committed in between would be overwritten by a decision
    made on "paid". Every locking read in the console goes through here.
    """
    if state.is_select and getattr(state.statement, "_for_update_arg", None) is not None:
        state.update_execution_options(populate_existing=True)


class Database:
    """Holds the engine and hands out the app-context session."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessionmaker = sessionmaker(bind=self.engine, expire_on_commit=False)

    def init_app(self, app: Flask) -> None:
        app.extensions["console_db"] = self
        app.teardown_appcontext(self._teardown)

    def _teardown(self, _exc: BaseException | None) -> None:
        session: Session | None = g.pop("_db_session", None)
        if session is not None:
            session.close()

    def new_session(self) -> Session:
        return self.sessionmaker()


def get_db(app: Flask | None = None) -> Database:
    """Return the app's Database."""
    target = app or current_app
    db: Database = target.extensions["console_db"]
    return db


def session() -> Session:
    """Return the session bound to the current app context."""
    existing: Session | None = g.get("_db_session")
    if existing is None:
        existing = get_db().new_session()
        g._db_session = existing
    return existing


@contextmanager
def separate_session() -> Iterator[Session]:
    """Open a session independent of the request's (e.g. to audit a failure)."""
    s = get_db().new_session()
    try:
        yield s
    finally:
        s.close()


def worker_session() -> Session:
    """A session on its own connection from the engine, for a background worker thread."""
    return Session(get_db().engine, expire_on_commit=False)


@contextmanager
def advisory_lock(s: Session, key: int, sub_key: int = 0) -> Iterator[bool]:
    """Hold a PostgreSQL advisory lock for a whole job; yield whether we got it.

    The lock lives on a connection of its own, held until the block ends, so
    the job's session may commit as often as it likes (a session returns its
    connection to the pool on commit, which would lose a session-level lock).
    Someone else holding it: yields False at once, never waits.
    """
    bind = s.get_bind()
    if isinstance(bind, Engine):
        conn = bind.connect()
        owned = True
    else:  # a session bound to one connection (the tests' outer transaction)
        conn = bind
        owned = False
    got = False
    try:
        got = bool(
            conn.scalar(text("SELECT pg_try_advisory_lock(:k, :s)"), {"k": key, "s": sub_key})
        )
        if owned:
            conn.commit()  # session-level lock: it outlives this transaction
        yield got
    finally:
        if got:
            conn.execute(text("SELECT pg_advisory_unlock(:k, :s)"), {"k": key, "s": sub_key})
            if owned:
                conn.commit()
        if owned:
            conn.close()
