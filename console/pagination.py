"""Keyset pagination on `(sort key, id)`: no OFFSET walks, no COUNT(*) per page.

A cursor is the (sort value, id) of the row at the edge of the current page,
encoded in the URL so pages can be shared and bookmarked. It is signed with
the app's secret (HMAC-SHA256, bound to the sort key) and type-checked
against the sort column on decode: an edited, foreign or ill-typed cursor is
a `BadCursor` (400), never a database error.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

from flask import current_app
from sqlalchemy import ColumnElement, Select, and_, literal, select, tuple_, union
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.types import TypeDecorator

T = TypeVar("T")
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_CURSOR = 512


class BadCursor(ValueError):
    """The cursor in the URL is not one this list produced."""


@dataclass(frozen=True)
class SortOption:
    key: str
    label: str
    column: InstrumentedAttribute[Any]


@dataclass
class Page(Generic[T]):
    rows: list[T]
    sort: str
    direction: str  # "asc" | "desc"
    next_cursor: str | None
    prev_cursor: str | None
    limit: int
    args: dict[str, str] = field(default_factory=dict)

    def url_args(self, **changes: str | None) -> str:
        """Query string for this list with some arguments changed."""
        merged: dict[str, str] = {k: v for k, v in self.args.items() if v}
        for k, v in changes.items():
            if v is None:
                merged.pop(k, None)
            else:
                merged[k] = v
        return urlencode(merged)

    def sort_link(self, key: str) -> str:
        direction = "asc" if self.sort == key and self.direction == "desc" else "desc"
        return self.url_args(sort=key, dir=direction, after=None, before=None)

    def aria_sort(self, key: str) -> str:
        if self.sort != key:
            return "none"
        return "ascending" if self.direction == "asc" else "descending"


def _secret() -> bytes:
    return str(current_app.config["SECRET_KEY"]).encode()


def _mac(sort: str, payload: str) -> str:
    mac = hmac.new(_secret(), f"keyset-cursor|{sort}|{payload}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()[:18]).decode()


def _encode(sort: str, value: Any, row_id: int) -> str:
    """A signed cursor: base64url JSON of (typed value, id), a dot, an HMAC over it and the sort."""
    if isinstance(value, datetime):
        raw: Any = {"t": value.isoformat()}
    elif isinstance(value, enum.Enum):
        raw = {"s": value.value}
    else:
        raw = {"v": value}
    data = json.dumps([raw, row_id], separators=(",", ":")).encode()
    payload = base64.urlsafe_b64encode(data).decode().rstrip("=")
    return f"{payload}.{_mac(sort, payload)}"


def _kind(column: InstrumentedAttribute[Any]) -> tuple[str, Any]:
    """What a cursor value for this column must be: ("t"|"s"|"v", python type or enum)."""
    col_type = column.property.columns[0].type
    enum_class = getattr(col_type, "enum_class", None)
    if enum_class is not None:
        return "s", enum_class
    base_type = col_type.impl if isinstance(col_type, TypeDecorator) else col_type
    try:
        python_type = base_type.python_type
    except NotImplementedError:  # pragma: no cover - every sort column has one
        python_type = object
    if python_type is datetime:
        return "t", datetime
    return "v", python_type


def _decode(cursor: str, sort: str, column: InstrumentedAttribute[Any]) -> tuple[Any, int]:
    """Check the signature, then the types; BadCursor for anything this list did not produce."""
    if len(cursor) > MAX_CURSOR:
        raise BadCursor("cursor too long")
    payload, dot, mac = cursor.partition(".")
    expected = _mac(sort, payload).encode()
    if not dot or not payload or not hmac.compare_digest(mac.encode(), expected):
        raise BadCursor("cursor signature does not match")
    try:
        padded = payload + "=" * (-len(payload) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError) as exc:
        raise BadCursor("cursor is not readable") from exc
    if not isinstance(decoded, list) or len(decoded) != 2:
        raise BadCursor("cursor has the wrong shape")
    raw, row_id = decoded
    if type(row_id) is not int or not isinstance(raw, dict) or len(raw) != 1:
        raise BadCursor("cursor has the wrong shape")
    if not -(2**63) <= row_id < 2**63:
        raise BadCursor("cursor id out of range")
    tag, value = next(iter(raw.items()))
    kind, python_type = _kind(column)
    if value is None and tag in ("t", "s", "v"):
        return None, row_id  # a row whose sort column is NULL
    if tag != kind:
        raise BadCursor("cursor value has the wrong type for this sort")
    if kind == "t":
        if not isinstance(value, str):
            raise BadCursor("cursor time is not a string")
        try:
            when = datetime.fromisoformat(value)
        except ValueError as exc:
            raise BadCursor("cursor time is not a time") from exc
        if when.tzinfo is None:
            raise BadCursor("cursor time has no time zone")
        return when, row_id
    if kind == "s":
        if value not in {m.value for m in python_type}:
            raise BadCursor("cursor value is not one of the column's values")
        return value, row_id
    if python_type is int:
        if type(value) is not int or not -(2**63) <= value < 2**63:
            raise BadCursor("cursor value is not a 64-bit integer")
    elif python_type is str:
        if not isinstance(value, str) or "\x00" in value:
            raise BadCursor("cursor value is not text")
    elif python_type is not object and not isinstance(value, python_type):
        raise BadCursor("cursor value has the wrong type")
    return value, row_id


def _after(
    col: InstrumentedAttribute[Any],
    id_column: InstrumentedAttribute[Any],
    value: Any,
    row_id: int,
    ascending: bool,
) -> ColumnElement[bool]:
    """Rows after the cursor in the page's order, as a row-value comparison.

    `(col, id) > (x, y)` lets PostgreSQL start the index scan at the cursor;
    the equivalent `col > x OR (col = x AND id > y)` is only a filter. A NULL
    sort value keeps its old meaning: the rest of the NULL rows, by id.
    """
    if value is None:
        return and_(col.is_(None), id_column > row_id if ascending else id_column < row_id)
    left = tuple_(col, id_column)
    right = tuple_(literal(value, col.type), literal(row_id, id_column.type))
    return left > right if ascending else left < right


def _union_page(
    stmt: Select[Any],
    any_of: Sequence[ColumnElement[bool]],
    *,
    col: InstrumentedAttribute[Any],
    id_column: InstrumentedAttribute[Any],
    ascending: bool,
    limit: int,
) -> Select[Any]:
    """`stmt` limited to the ids of the page's rows, found one condition at a time."""
    keys = (col, id_column) if col is not id_column else (id_column,)
    order = [k.asc() if ascending else k.desc() for k in keys]
    branches = [
        stmt.with_only_columns(*keys).where(cond).order_by(*order).limit(limit + 1)
        for cond in any_of
    ]
    # UNION, not UNION ALL: a row that matches two conditions is one row of the page.
    found = union(*branches).subquery("any_of")
    found_cols = list(found.c)
    found_order = [c.asc() if ascending else c.desc() for c in found_cols]
    page_ids = select(found_cols[-1]).order_by(*found_order).limit(limit + 1)
    return stmt.where(id_column.in_(page_ids))


def keyset_page(
    s: Session,
    stmt: Select[Any],
    *,
    id_column: InstrumentedAttribute[Any],
    sort_options: Sequence[SortOption],
    args: Mapping[str, str],
    default_sort: str,
    default_direction: str = "desc",
    scalars: bool = True,
    any_of: Sequence[ColumnElement[bool]] = (),
) -> Page[Any]:
    """Fetch one page of `stmt` ordered by the chosen sort key and id.

    `any_of`: rows matching at least one of these conditions (an OR the caller
    knows each branch of which has its own `(column, sort key)` index). An OR
    in the WHERE clause is one filter no index orders: PostgreSQL walks the
    sort index and drops the rows that match neither (6,000 rows for a page of
    an actor's 0.8% of the audit log), or collects every match and sorts. Here
    each condition's page is its own ordered index range, the union of their
    (sort value, id) keys is cut to the page, and the page's rows are read by id.
    """
    options = {o.key: o for o in sort_options}
    sort = args.get("sort", default_sort)
    if sort not in options:
        sort = default_sort
    direction = args.get("dir", default_direction)
    if direction not in ("asc", "desc"):
        direction = default_direction
    try:
        limit = min(max(int(args.get("limit", PAGE_SIZE)), 1), MAX_PAGE_SIZE)
    except ValueError:
        limit = PAGE_SIZE
    col = options[sort].column
    after, before = args.get("after"), args.get("before")
    backwards = bool(before) and not after
    cursor = after or before
    ascending = (direction == "asc") != backwards
    if cursor:
        value, row_id = _decode(cursor, sort, col)
        stmt = stmt.where(_after(col, id_column, value, row_id, ascending))
    order = (col.asc(), id_column.asc()) if ascending else (col.desc(), id_column.desc())
    if len(any_of) > 1:
        stmt = _union_page(
            stmt, any_of, col=col, id_column=id_column, ascending=ascending, limit=limit
        )
    elif any_of:
        stmt = stmt.where(any_of[0])
    stmt = stmt.order_by(*order).limit(limit + 1)
    result = s.execute(stmt)
    rows: list[Any] = list(result.scalars().all() if scalars else result.all())
    has_more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()

    def edge(row: Any) -> str:
        obj = row if scalars else row[0]
        return _encode(sort, getattr(obj, col.key), getattr(obj, id_column.key))

    next_cursor = prev_cursor = None
    if rows:
        if backwards:
            next_cursor = edge(rows[-1])
            prev_cursor = edge(rows[0]) if has_more else None
        else:
            next_cursor = edge(rows[-1]) if has_more else None
            prev_cursor = edge(rows[0]) if cursor else None
    clean_args = {k: v for k, v in args.items() if k not in ("after", "before")}
    return Page(
        rows=rows,
        sort=sort,
        direction=direction,
        next_cursor=next_cursor,
        prev_cursor=prev_cursor,
        limit=limit,
        args=clean_args,
    )
