"""Keyset pagination on `(sort key, id)`: no OFFSET walks, no COUNT(*) per page.

A cursor is the (sort value, id) of the row at the edge of the current page,
encoded in the URL so pages can be shared and bookmarked.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute, Session

T = TypeVar("T")
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


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


def _encode(value: Any, row_id: int) -> str:
    if isinstance(value, datetime):
        raw: Any = {"t": value.isoformat()}
    elif hasattr(value, "value"):  # enums
        raw = {"s": value.value}
    else:
        raw = {"v": value}
    data = json.dumps([raw, row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _decode(cursor: str) -> tuple[Any, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(row_id, int) or not isinstance(raw, dict) or len(raw) != 1:
            raise BadCursor(cursor)
        if "t" in raw:
            return datetime.fromisoformat(raw["t"]), row_id
        if "s" in raw:
            return raw["s"], row_id
        return raw["v"], row_id
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise BadCursor(cursor) from exc


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
) -> Page[Any]:
    """Fetch one page of `stmt` ordered by the chosen sort key and id."""
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
        value, row_id = _decode(cursor)
        if ascending:
            cond = or_(col > value, and_(col == value, id_column > row_id))
        else:
            cond = or_(col < value, and_(col == value, id_column < row_id))
        stmt = stmt.where(cond)
    order = (col.asc(), id_column.asc()) if ascending else (col.desc(), id_column.desc())
    stmt = stmt.order_by(*order).limit(limit + 1)
    result = s.execute(stmt)
    rows: list[Any] = list(result.scalars().all() if scalars else result.all())
    has_more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()

    def edge(row: Any) -> str:
        obj = row if scalars else row[0]
        return _encode(getattr(obj, col.key), getattr(obj, id_column.key))

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
