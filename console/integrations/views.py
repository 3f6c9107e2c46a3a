"""`/integrations`: API keys, webhook endpoints and the deliveries list."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request
from flask_login import login_required
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from console import db
from console.db import parse_id, utcnow
from console.integrations.actions import Integrations
from console.integrations.models import (
    ApiKey,
    DeliveryStatus,
    EventDelivery,
    OutboxEvent,
    WebhookEndpoint,
)
from console.integrations.outbox import EVENT_TYPES
from console.pagination import SortOption, keyset_page
from console.security.guards import require
from console.security.permissions import Permission

bp = Blueprint("integrations", __name__)

SORTS = [
    SortOption("created", "Created", EventDelivery.created_at),
    SortOption("next", "Next attempt", EventDelivery.next_attempt_at),
]
STATUSES = {"": "All deliveries", **{s.value: s.value.capitalize() for s in DeliveryStatus}}
KEY_LIMIT = 200


@bp.get("/integrations")
@login_required
@require(Permission.QUEUES_VIEW)
def index() -> Any:
    """The shop connection: keys in, endpoints and deliveries out."""
    s = db.session()
    args = request.args.to_dict()
    filters = {k: args.get(k, "").strip() for k in ("status", "type", "endpoint_id", "record")}
    stmt = select(EventDelivery).options(
        joinedload(EventDelivery.event), joinedload(EventDelivery.endpoint)
    )
    if filters["status"] in {s.value for s in DeliveryStatus}:
        stmt = stmt.where(EventDelivery.status == DeliveryStatus(filters["status"]))
        if filters["status"] == DeliveryStatus.PENDING.value:
            args.setdefault("sort", "next")
    else:
        filters["status"] = ""
    endpoint_pk = parse_id(filters["endpoint_id"])
    if endpoint_pk is not None:
        stmt = stmt.where(EventDelivery.endpoint_id == endpoint_pk)
    else:
        filters["endpoint_id"] = ""
    if filters["type"] in EVENT_TYPES or filters["record"]:
        stmt = stmt.join(OutboxEvent, OutboxEvent.id == EventDelivery.event_pk)
        if filters["type"] in EVENT_TYPES:
            stmt = stmt.where(OutboxEvent.type == filters["type"])
        if filters["record"]:
            stmt = stmt.where(OutboxEvent.record_id == filters["record"][:64])
    if filters["type"] not in EVENT_TYPES:
        filters["type"] = ""
    if args.get("sort") == "next":
        stmt = stmt.where(EventDelivery.next_attempt_at.is_not(None))
    page = keyset_page(
        s,
        stmt,
        id_column=EventDelivery.id,
        sort_options=SORTS,
        args=args,
        default_sort="created",
    )
    keys = list(s.scalars(select(ApiKey).order_by(ApiKey.id.desc()).limit(KEY_LIMIT)))
    endpoints = list(s.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))
    return render_template(
        "integrations/index.html",
        page=page,
        args=args,
        filters=filters,
        statuses=STATUSES,
        event_types=list(EVENT_TYPES),
        keys=keys,
        endpoints=endpoints,
        target=Integrations(keys=len(keys), endpoints=len(endpoints)),
        now=utcnow(),
    )
