"""Query parameters: one check for every request, and typed parsing helpers.

Every page reads its filters from the URL, so every page is reachable with
whatever a person (or a scanner) types there. `check_query` runs before each
request and answers 400 for what no page can use: NUL bytes anywhere in the path or
the query string, and dates out of the range the console stores. The helpers
parse the typed values (`parse_time`) the same way everywhere.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask, request
from werkzeug.exceptions import BadRequest

# Query parameters that hold a date or time, on every page that has them.
DATE_PARAMS = frozenset({"since", "until"})
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


class BadParameter(BadRequest):
    """A query parameter no page can use; the description says which and why."""


def parse_time(raw: str | None) -> datetime | None:
    """Accept `2026-11-03`, `2026-11-03T14:02` or full ISO; always UTC.

    None for an empty or unreadable value (pages say so beside the filter);
    `BadParameter` for a readable date outside 1970..9000 (no record is
    there, and the extremes overflow time-zone arithmetic).
    """
    if not raw or not raw.strip():
        return None
    text = raw.strip().replace("Z", "+00:00")
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    try:
        when = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        when = None
    if when is None or not EARLIEST <= when < LATEST:
        raise BadParameter(
            f"The date {raw[:40]!r} is out of range: use a date between "
            f"{EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}."
        )
    return when


NUL_MESSAGE = (
    "The address contains a NUL character, which no page accepts. Remove it and try again."
)


def check_query() -> None:
    """Refuse NUL bytes in the path or any query parameter, and out-of-range dates (400).

    A signed-in person's refused request is audited (what was sent, made
    storable by the chain); an anonymous one is only logged, so a scanner
    cannot fill the audit log.
    """
    try:
        if "\x00" in request.path:
            raise BadParameter(NUL_MESSAGE)
        for key, value in request.args.items(multi=True):
            if "\x00" in key or "\x00" in value:
                raise BadParameter(NUL_MESSAGE)
            if key in DATE_PARAMS:
                parse_time(value)
    except BadParameter as exc:
        _audit_refusal(str(exc.description))
        raise


def _audit_refusal(why: str) -> None:
    from flask_login import current_user

    if not getattr(current_user, "is_authenticated", False):
        return
    from console.audit.service import record_now

    record_now(
        action="page:request:refused",
        outcome="failed",
        target_type="page",
        target_id=request.path,
        details={
            "why": why,
            "method": request.method,
            "query": request.query_string.decode("utf-8", "replace")[:500],
            "http_status": 400,
        },
    )


def init_params(app: Flask) -> None:
    app.before_request(check_query)
