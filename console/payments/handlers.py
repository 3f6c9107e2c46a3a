"""The registry of Stripe event handlers.

`payments` knows no queue: the queue packages register what they do with an
event type (`@handles("payment_intent.succeeded")`). A handler changes rows
in the caller's transaction and never commits; raising `Unprocessable`
leaves the event `failed` with that message, for a person to look at.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

Handler = Callable[[Session, dict[str, Any]], None]
HANDLERS: dict[str, Handler] = {}


class Unprocessable(Exception):
    """The event cannot be applied as it stands (e.g. unknown PaymentIntent)."""


RecordFinder = Callable[[Session, dict[str, Any]], list[Any]]
RECORD_FINDERS: list[RecordFinder] = []


def touches(fn: RecordFinder) -> RecordFinder:
    """Register a finder of the records an event is about (a replay's audit names them)."""
    RECORD_FINDERS.append(fn)
    return fn


def records_touched(s: Session, event: dict[str, Any]) -> list[Any]:
    return [rec for finder in RECORD_FINDERS for rec in finder(s, event)]


def handles(event_type: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        if event_type in HANDLERS:
            raise ValueError(f"{event_type} already has a handler")
        HANDLERS[event_type] = fn
        return fn

    return register
