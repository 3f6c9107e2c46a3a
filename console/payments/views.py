"""The webhooks page: stored Stripe events, rejected deliveries, one event in full."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from flask import Blueprint, abort, render_template, request
from flask_login import login_required
from sqlalchemy import func, or_, select

from console import db
from console.audit.chain import redact
from console.audit.queries import history_for
from console.db import utcnow
from console.pagination import SortOption, keyset_page
from console.params import parse_time
from console.payments.handlers import HANDLERS
from console.payments.models import WebhookEvent, WebhookRejection, WebhookStatus
from console.security.guards import require
from console.security.permissions import Permission

bp = Blueprint("webhooks", __name__)

EVENT_SORTS = [
    SortOption("received", "Received", WebhookEvent.received_at),
    SortOption("attempts", "Attempts", WebhookEvent.attempts),
]
REJECTION_SORTS = [SortOption("received", "Received", WebhookRejection.received_at)]
STATUS_FILTERS = {
    "attention": "Needs attention (failed or unprocessed)",
    **{s.value: s.value for s in WebhookStatus},
    "received": "received (stored, queued for a worker)",
}


@bp.get("/webhooks")
@login_required
@require(Permission.QUEUES_VIEW)
def index() -> Any:
    """Stripe events with filters; `?tab=rejected` lists refused deliveries."""
    s = db.session()
    args = request.args.to_dict()
    tab = "rejected" if args.get("tab") == "rejected" else "events"
    now = utcnow()
    day_ago = now - timedelta(hours=24)
    summary = {
        "last_event_at": s.scalar(select(func.max(WebhookEvent.received_at))),
        "received_24h": s.scalar(
            select(func.count(WebhookEvent.id)).where(WebhookEvent.received_at >= day_ago)
        ),
        "failed": s.scalar(
            select(func.count(WebhookEvent.id)).where(
                WebhookEvent.processed_at.is_(None), WebhookEvent.status == WebhookStatus.FAILED
            )
        ),
        "retried_24h": s.scalar(
            select(func.count(WebhookEvent.id)).where(
                WebhookEvent.received_at >= day_ago, WebhookEvent.attempts > 1
            )
        ),
        "rejected_24h": s.scalar(
            select(func.count(WebhookRejection.id)).where(WebhookRejection.received_at >= day_ago)
        ),
    }
    errors: list[str] = []
    since = parse_time(args.get("since"))
    if args.get("since") and since is None:
        errors.append(f"'{args['since']}' is not a date or time.")
    if tab == "rejected":
        stmt = select(WebhookRejection)
        if since:
            stmt = stmt.where(WebhookRejection.received_at >= since)
        page = keyset_page(
            s,
            stmt,
            id_column=WebhookRejection.id,
            sort_options=REJECTION_SORTS,
            args=args,
            default_sort="received",
        )
    else:
        stmt = select(WebhookEvent)
        status = args.get("status", "")
        if status == "attention":
            stmt = stmt.where(
                WebhookEvent.processed_at.is_(None),
                WebhookEvent.status.in_([WebhookStatus.FAILED, WebhookStatus.RECEIVED]),
            )
        elif status in {st.value for st in WebhookStatus}:
            stmt = stmt.where(WebhookEvent.status == WebhookStatus(status))
        event_type = args.get("type", "").strip()
        if event_type:
            stmt = stmt.where(WebhookEvent.type == event_type)
        q = args.get("q", "").strip()
        if q:
            stmt = stmt.where(or_(WebhookEvent.event_id == q, WebhookEvent.object_id == q))
        if since:
            stmt = stmt.where(WebhookEvent.received_at >= since)
        page = keyset_page(
            s,
            stmt,
            id_column=WebhookEvent.id,
            sort_options=EVENT_SORTS,
            args=args,
            default_sort="received",
        )
    return render_template(
        "webhooks/index.html",
        tab=tab,
        page=page,
        args=args,
        summary=summary,
        statuses=STATUS_FILTERS,
        types=sorted(HANDLERS),
        errors=errors,
    )


@bp.get("/webhooks/<event_id>")
@login_required
@require(Permission.QUEUES_VIEW)
def detail(event_id: str) -> Any:
    """One event: its stored body (secrets redacted), processing state and history."""
    s = db.session()
    event = s.scalar(select(WebhookEvent).where(WebhookEvent.event_id == event_id))
    if event is None:
        abort(404, f"No Stripe event {event_id} is stored here.")
    try:
        body = json.dumps(redact(json.loads(event.raw_body)), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        body = str(redact(event.raw_body[:20000])) or "(the stored body is empty)"
    return render_template(
        "webhooks/detail.html",
        event=event,
        body=body,
        handled=event.type in HANDLERS,
        history_entries=history_for(s, "webhook_event", event.event_id),
    )
