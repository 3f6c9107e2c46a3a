"""Guarded actions on Stripe webhook events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import url_for
from sqlalchemy import inspect
from sqlalchemy.orm import Session

from console.actions.framework import (
    RECORD_KINDS,
    Action,
    ActionContext,
    ActionError,
    Outcome,
    declare,
    loader,
)
from console.currency import format_money
from console.ops.metrics import WEBHOOK_EVENTS
from console.payments.gateway import GatewayError
from console.payments.handlers import HANDLERS, Unprocessable, records_touched
from console.payments.models import WebhookEvent, WebhookStatus
from console.payments.webhooks import apply_event, mark_failed
from console.security.permissions import Permission

load_event = loader(WebhookEvent, WebhookEvent.event_id)


def event_snapshot(e: WebhookEvent) -> dict[str, Any]:
    return {
        "status": e.status.value,
        "attempts": e.attempts,
        "processed_at": e.processed_at,
        "last_error": e.last_error,
    }


def _replay_precondition(e: WebhookEvent) -> str | None:
    if e.processed_at is not None:
        return (
            f"event {e.event_id} was already processed; replay is only allowed while it is "
            "unprocessed (runbook 002)."
        )
    return None


def _replay_describe(e: WebhookEvent) -> list[tuple[str, str]]:
    handled = "yes" if e.type in HANDLERS else "no: it will be marked ignored"
    return [
        ("Event", f"{e.event_id} ({e.type})"),
        ("Object", e.object_id or "—"),
        ("Attempts so far", str(e.attempts)),
        ("Last error", e.last_error or "—"),
        ("Handled type", handled),
        ("Effect", "Re-runs processing from the stored body, exactly once."),
    ]


def replay_preview(s: Session, e: WebhookEvent, _params: dict[str, Any]) -> list[tuple[str, str]]:
    """Dry run: apply the event inside a savepoint, list what would change, roll back."""
    nested = s.begin_nested()
    try:
        with s.no_autoflush:
            apply_event(s, e, flush=False)
            lines = [("Would succeed", "yes"), *describe_pending_changes(s, skip=e)]
    except (Unprocessable, GatewayError, ValueError, LookupError) as exc:
        lines = [("Would succeed", "no"), ("Because", str(exc))]
    finally:
        nested.rollback()
        s.expire_all()
    return lines


def describe_pending_changes(s: Session, skip: object = None) -> list[tuple[str, str]]:
    """Unflushed changes in words: 'Order ORD-1: status paid -> confirmed'.

    Read by support, so in their terms: amounts in the record's currency
    ('42.00 EUR', not 4200) and references to other records by the id the shop
    and Stripe use ('order ORD-DEMO-0003', not 'order_id 3001').
    """
    lines: list[tuple[str, str]] = []
    new_objects = set(map(id, s.new))
    for obj in list(s.dirty) + list(s.new):
        if obj is skip:
            continue
        state = inspect(obj)
        ident = getattr(obj, "external_id", None) or getattr(obj, "id", None)
        kind = type(obj).__name__
        name = f"New {kind}" if id(obj) in new_objects else f"{kind} {ident or ''}".strip()
        references = _references(state.mapper)
        changes = []
        for attr in state.mapper.column_attrs:
            hist = state.attrs[attr.key].history
            if hist.added and attr.key not in ("updated_at", "created_at", "id"):
                old = hist.deleted[0] if hist.deleted else None
                new = hist.added[0]
                if old is None and new is None:
                    continue
                label, show = attr.key, _word
                if attr.key in references:
                    label = attr.key.removesuffix("_id")
                    show = _reference_word(s, references[attr.key])
                elif _is_amount(attr.key) and getattr(obj, "currency", None):
                    show = _money_word(str(obj.currency))
                changes.append(f"{label.replace('_', ' ')}: {show(old)} -> {show(new)}")
        if changes:
            lines.append((name.strip(), "; ".join(changes)))
    return lines


def _is_amount(key: str) -> bool:
    return key.startswith("amount") or key.endswith("_amount")


def _references(mapper: Any) -> dict[str, type]:
    """Foreign-key columns of a model -> the model of the table they point at."""
    by_table = {m.local_table.name: m.class_ for m in mapper.registry.mappers}
    found: dict[str, type] = {}
    for attr in mapper.column_attrs:
        for column in attr.columns:
            for fk in getattr(column, "foreign_keys", ()):
                model = by_table.get(fk.column.table.name)
                if model is not None:
                    found[attr.key] = model
    return found


def _reference_word(s: Session, model: type) -> Any:
    def show(value: Any) -> str:
        if value is None:
            return "—"
        with s.no_autoflush:
            other = s.get(model, value)
        shown = getattr(other, "external_id", None) if other is not None else None
        return str(shown) if shown else f"#{value}"

    return show


def _money_word(currency: str) -> Any:
    def show(value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            return format_money(value, currency)
        return _word(value)

    return show


def _word(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return str(getattr(value, "value", value))[:60]


def _replay_effect(ctx: ActionContext, e: WebhookEvent) -> Outcome:
    try:
        status = apply_event(ctx.session, e)
    except (Unprocessable, GatewayError) as exc:
        event_id = e.event_id
        ctx.session.rollback()
        with_session_failure(event_id, str(exc), isinstance(exc, GatewayError) and exc.retryable)
        raise ActionError(
            f"Replay did not succeed: {exc}", status=502 if isinstance(exc, GatewayError) else 422
        ) from exc
    WEBHOOK_EVENTS.labels("retry").inc()
    if status == WebhookStatus.IGNORED:
        return Outcome(f"Event {e.event_id} has no handler; marked ignored.")
    return Outcome(f"Event {e.event_id} replayed and processed.")


def with_session_failure(event_id: str, error: str, retryable: bool) -> None:
    from console.db import separate_session

    with separate_session() as s:
        mark_failed(s, event_id, error, retryable=retryable)


def event_url(e: WebhookEvent) -> str:
    return url_for("webhooks.detail", event_id=e.event_id)


def _touched(e: WebhookEvent) -> list[Any]:
    """The records the event is about (an order): the replay shows in their history too."""
    import json

    from sqlalchemy.orm import object_session

    s = object_session(e)
    try:
        body = json.loads(e.raw_body)
    except ValueError:
        return []
    return records_touched(s, body) if s is not None and isinstance(body, dict) else []


def _kind(rec: Any) -> str | None:
    kind = RECORD_KINDS.get(type(rec))
    return kind.target_type if kind else None


replay_event = declare(
    Action[WebhookEvent](
        name="webhooks:event:replay",
        label="Replay event",
        permission=Permission.WEBHOOKS_EVENT_REPLAY,
        target_type="webhook_event",
        load=load_event,
        precondition=_replay_precondition,
        describe=_replay_describe,
        effect=_replay_effect,
        snapshot=event_snapshot,
        return_url=event_url,
        preview=replay_preview,
        changes=_touched,
        # The shop hears of each order the replay changed (confirmed, refunded), with the
        # order's new state; an order the event left as it was gets no event.
        event=lambda rec: "order.stripe_event_replayed" if _kind(rec) == "order" else None,
        event_records=_touched,
    )
)
