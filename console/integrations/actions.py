"""Guarded actions of /integrations: API keys, webhook endpoints, redelivery."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload
from wtforms import IntegerField, SelectMultipleField, StringField, widgets
from wtforms.validators import InputRequired, Length, NumberRange, Optional, Regexp

from console.actions.framework import (
    Action,
    ActionContext,
    ActionError,
    ActionForm,
    Outcome,
    declare,
)
from console.db import parse_id, utcnow
from console.integrations import delivery as dl
from console.integrations.keys import SCOPES, issue_key, key_state, revoke_key, rotate_key
from console.integrations.models import ApiKey, DeliveryStatus, EventDelivery, WebhookEndpoint
from console.integrations.outbox import EVENT_TYPES
from console.security.permissions import Permission


@dataclass
class Integrations:
    """The target of 'create key' and 'add endpoint': the shop connection as a whole."""

    keys: int
    endpoints: int
    external_id: str = "shop"


def load_integrations(s: Session, _key: str, _lock: bool) -> Integrations | None:
    if _key != "shop":
        return None
    from sqlalchemy import func

    return Integrations(
        keys=int(s.scalar(select(func.count(ApiKey.id))) or 0),
        endpoints=int(s.scalar(select(func.count(WebhookEndpoint.id))) or 0),
    )


def page_url(_target: Any = None) -> str:
    return url_for("integrations.index")


class MultiCheckbox(SelectMultipleField):
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


# ------------------------------------------------------------------ API keys


class KeyForm(ActionForm):
    name = StringField(
        "Key name (what uses it, e.g. 'storefront backend')",
        validators=[InputRequired("Name the key."), Length(min=3, max=100)],
    )
    shop = StringField(
        "Shop",
        validators=[
            InputRequired("Name the shop."),
            Length(min=2, max=100),
            Regexp(r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$", message="Letters, digits, space and ._-"),
        ],
    )
    scopes = MultiCheckbox(
        "Record kinds it may write",
        choices=list(SCOPES),
        validators=[InputRequired("Choose at least one record kind.")],
    )


def _key_params(form: ActionForm) -> dict[str, Any]:
    return {
        "name": (form.data.get("name") or "").strip(),
        "shop": (form.data.get("shop") or "").strip(),
        "scopes": sorted(form.data.get("scopes") or []),
    }


def _create_key(ctx: ActionContext, _t: Integrations) -> Outcome:
    p = ctx.params
    issued = issue_key(
        ctx.session, name=p["name"], shop=p["shop"], scopes=p["scopes"], actor_sub=ctx.user.sub
    )
    return Outcome(
        f"API key '{issued.key.name}' for {issued.key.shop} created "
        f"(csk_{issued.key.prefix}_..., scopes {', '.join(issued.key.scopes)}).",
        {"key_id": issued.key.id, "prefix": issued.key.prefix, "scopes": issued.key.scopes},
        reveal=issued.token,
        reveal_label="The new API key",
    )


create_key = declare(
    Action[Integrations](
        name="integrations:key:create",
        label="Create API key",
        permission=Permission.INTEGRATIONS_KEY_MANAGE,
        target_type="integrations",
        load=load_integrations,
        precondition=lambda t: None,
        describe=lambda t: [
            ("Keys so far", str(t.keys)),
            (
                "Effect",
                "Creates a key the shop sends as `Authorization: Bearer`. It is shown once, "
                "after you confirm; the console keeps only its hash. Writes through it are "
                "audited as the key.",
            ),
        ],
        effect=_create_key,
        snapshot=lambda t: {"keys": t.keys},
        return_url=page_url,
        form=KeyForm,
        params=_key_params,
        reason_help="Why the shop needs this key (which system, which ticket).",
    )
)


def load_key(s: Session, key_id: str, lock: bool) -> ApiKey | None:
    pk = parse_id(key_id)
    if pk is None:
        return None
    stmt = select(ApiKey).where(ApiKey.id == pk)
    if lock:
        stmt = stmt.with_for_update(nowait=True)
    return s.scalar(stmt)


def key_snapshot(k: ApiKey) -> dict[str, Any]:
    return {
        "name": k.name,
        "prefix": k.prefix,
        "scopes": list(k.scopes),
        "expires_at": k.expires_at,
        "revoked_at": k.revoked_at,
    }


def _usable(k: ApiKey) -> str | None:
    state = key_state(k, utcnow())
    return None if state in ("active", "expiring") else f"the key is {state}."


class RotateForm(ActionForm):
    overlap_hours = IntegerField(
        "Overlap: hours the old key keeps working",
        default=24,
        validators=[InputRequired("Give the overlap in hours."), NumberRange(min=0, max=720)],
    )


def _rotate_key(ctx: ActionContext, k: ApiKey) -> Outcome:
    if k.expires_at is not None:
        raise ActionError("This key is already being replaced; rotate its successor.", 409)
    hours = int(ctx.params["overlap_hours"])
    issued = rotate_key(ctx.session, k, overlap=timedelta(hours=hours), actor_sub=ctx.user.sub)
    return Outcome(
        f"Key '{k.name}' rotated: the new key is csk_{issued.key.prefix}_...; the old one "
        f"(csk_{k.prefix}_...) works for {hours} more hour(s).",
        {"new_key_id": issued.key.id, "new_prefix": issued.key.prefix, "overlap_hours": hours},
        reveal=issued.token,
        reveal_label="The new API key",
    )


rotate = declare(
    Action[ApiKey](
        name="integrations:key:rotate",
        label="Rotate",
        permission=Permission.INTEGRATIONS_KEY_MANAGE,
        target_type="api_key",
        load=load_key,
        precondition=lambda k: (
            _usable(k) or (None if k.expires_at is None else "the key is already being replaced.")
        ),
        describe=lambda k: [
            ("Key", f"{k.name} (csk_{k.prefix}_...) for {k.shop}"),
            ("Scopes", ", ".join(k.scopes)),
            (
                "Effect",
                "Creates a new key with the same scopes (shown once) and lets the old one "
                "work until the overlap ends, so the shop can switch without downtime.",
            ),
        ],
        effect=_rotate_key,
        snapshot=key_snapshot,
        return_url=page_url,
        form=RotateForm,
        params=lambda form: {"overlap_hours": form.data.get("overlap_hours") or 0},
        row=lambda k: ("integrations/index.html", "key_row", {"key": k, "now": utcnow()}),
    )
)


def _revoke(ctx: ActionContext, k: ApiKey) -> Outcome:
    revoke_key(k, actor_sub=ctx.user.sub)
    return Outcome(f"Key '{k.name}' (csk_{k.prefix}_...) revoked; it stops working now.")


revoke = declare(
    Action[ApiKey](
        name="integrations:key:revoke",
        label="Revoke",
        permission=Permission.INTEGRATIONS_KEY_MANAGE,
        target_type="api_key",
        load=load_key,
        precondition=_usable,
        describe=lambda k: [
            ("Key", f"{k.name} (csk_{k.prefix}_...) for {k.shop}"),
            ("Last used", k.last_used_at.isoformat() if k.last_used_at else "never"),
            ("Effect", "The key stops working at once; the shop's calls with it get 401."),
        ],
        effect=_revoke,
        snapshot=key_snapshot,
        return_url=page_url,
        danger=True,
        row=lambda k: ("integrations/index.html", "key_row", {"key": k, "now": utcnow()}),
    )
)


# ------------------------------------------------------------------ endpoints


class EndpointForm(ActionForm):
    url = StringField(
        "Endpoint URL (the shop's webhook receiver)",
        validators=[InputRequired("Enter the URL."), Length(min=10, max=2000)],
    )
    description = StringField("Description", validators=[Optional(), Length(max=255)])
    event_types = MultiCheckbox("Event types (none ticked: all)", choices=list(EVENT_TYPES))


def _endpoint_params(form: ActionForm) -> dict[str, Any]:
    return {
        "url": (form.data.get("url") or "").strip(),
        "description": (form.data.get("description") or "").strip(),
        "event_types": sorted(form.data.get("event_types") or []),
    }


def _allow_private() -> bool:
    return bool(current_app.config.get("WEBHOOK_ALLOW_PRIVATE_URLS"))


def _create_endpoint(ctx: ActionContext, _t: Integrations) -> Outcome:
    p = ctx.params
    why = dl.check_url(p["url"], allow_private=_allow_private())
    if why:
        raise ActionError(f"That URL cannot receive events: {why}.", 422)
    secret = dl.new_secret()
    endpoint = WebhookEndpoint(
        url=p["url"],
        description=p["description"],
        event_types=p["event_types"],
        secret_enc=dl.seal(secret),
        created_by_sub=ctx.user.sub,
    )
    ctx.session.add(endpoint)
    ctx.session.flush()
    return Outcome(
        f"Endpoint #{endpoint.id} ({endpoint.url}) added; new events are signed with its secret "
        f"(fingerprint {dl.secret_fingerprint(secret)}).",
        {"endpoint_id": endpoint.id, "url": endpoint.url, "event_types": endpoint.event_types},
        reveal=secret,
        reveal_label="The endpoint's signing secret (Standard Webhooks)",
    )


create_endpoint = declare(
    Action[Integrations](
        name="integrations:endpoint:create",
        label="Add endpoint",
        permission=Permission.INTEGRATIONS_ENDPOINT_MANAGE,
        target_type="integrations",
        load=load_integrations,
        precondition=lambda t: None,
        describe=lambda t: [
            ("Endpoints so far", str(t.endpoints)),
            (
                "Effect",
                "Every new event about the shop's records is posted to this URL, signed with "
                "the Standard Webhooks scheme (webhook-id, webhook-timestamp, "
                "webhook-signature), retried for three days. The secret is shown once.",
            ),
        ],
        effect=_create_endpoint,
        snapshot=lambda t: {"endpoints": t.endpoints},
        return_url=page_url,
        form=EndpointForm,
        params=_endpoint_params,
    )
)


def load_endpoint(s: Session, endpoint_id: str, lock: bool) -> WebhookEndpoint | None:
    pk = parse_id(endpoint_id)
    if pk is None:
        return None
    stmt = select(WebhookEndpoint).where(WebhookEndpoint.id == pk)
    if lock:
        stmt = stmt.with_for_update(nowait=True)
    return s.scalar(stmt)


def endpoint_snapshot(e: WebhookEndpoint) -> dict[str, Any]:
    return {
        "url": e.url,
        "enabled": e.enabled,
        "event_types": list(e.event_types),
        "previous_secret_expires_at": e.previous_secret_expires_at,
    }


def endpoint_row(e: WebhookEndpoint) -> tuple[str, str, dict[str, Any]]:
    return "integrations/index.html", "endpoint_row", {"endpoint": e}


def _disable(ctx: ActionContext, e: WebhookEndpoint) -> Outcome:
    e.enabled = False
    e.disabled_reason = ctx.reason
    return Outcome(
        f"Endpoint #{e.id} disabled: nothing is sent to it; its deliveries wait until it is "
        "enabled again."
    )


disable_endpoint = declare(
    Action[WebhookEndpoint](
        name="integrations:endpoint:disable",
        label="Disable endpoint",
        permission=Permission.INTEGRATIONS_ENDPOINT_MANAGE,
        target_type="webhook_endpoint",
        load=load_endpoint,
        precondition=lambda e: None if e.enabled else "the endpoint is already disabled.",
        describe=lambda e: [
            ("Endpoint", f"#{e.id} {e.url}"),
            (
                "Effect",
                "Stops sending to this URL. Events keep being recorded; pending deliveries "
                "wait and go out when it is enabled again (their three days keep running).",
            ),
        ],
        effect=_disable,
        snapshot=endpoint_snapshot,
        return_url=page_url,
        danger=True,
        row=endpoint_row,
    )
)


def _enable(ctx: ActionContext, e: WebhookEndpoint) -> Outcome:
    why = dl.check_url(e.url, allow_private=_allow_private())
    if why:
        raise ActionError(f"That URL cannot receive events: {why}.", 422)
    e.enabled = True
    e.disabled_reason = None
    return Outcome(f"Endpoint #{e.id} enabled; waiting deliveries go out on the next run.")


enable_endpoint = declare(
    Action[WebhookEndpoint](
        name="integrations:endpoint:enable",
        label="Enable endpoint",
        permission=Permission.INTEGRATIONS_ENDPOINT_MANAGE,
        target_type="webhook_endpoint",
        load=load_endpoint,
        precondition=lambda e: None if not e.enabled else "the endpoint is enabled.",
        describe=lambda e: [
            ("Endpoint", f"#{e.id} {e.url}"),
            ("Disabled because", e.disabled_reason or "—"),
            ("Effect", "Sends again, starting with the deliveries that waited."),
        ],
        effect=_enable,
        snapshot=endpoint_snapshot,
        return_url=page_url,
        row=endpoint_row,
    )
)


def _rotate_secret(ctx: ActionContext, e: WebhookEndpoint) -> Outcome:
    hours = int(ctx.params["overlap_hours"])
    secret = dl.new_secret()
    e.previous_secret_enc = e.secret_enc
    e.previous_secret_expires_at = utcnow() + timedelta(hours=hours)
    e.secret_enc = dl.seal(secret)
    return Outcome(
        f"Endpoint #{e.id}: new signing secret (fingerprint {dl.secret_fingerprint(secret)}); "
        f"events are signed with both secrets for {hours} hour(s).",
        {"overlap_hours": hours},
        reveal=secret,
        reveal_label="The endpoint's new signing secret",
    )


rotate_secret = declare(
    Action[WebhookEndpoint](
        name="integrations:endpoint:rotate_secret",
        label="Rotate secret",
        permission=Permission.INTEGRATIONS_ENDPOINT_MANAGE,
        target_type="webhook_endpoint",
        load=load_endpoint,
        precondition=lambda e: None,
        describe=lambda e: [
            ("Endpoint", f"#{e.id} {e.url}"),
            (
                "Effect",
                "A new secret (shown once). Until the overlap ends each event carries two "
                "signatures, one per secret, so the shop can switch without losing events.",
            ),
        ],
        effect=_rotate_secret,
        snapshot=endpoint_snapshot,
        return_url=page_url,
        form=RotateForm,
        params=lambda form: {"overlap_hours": form.data.get("overlap_hours") or 0},
        row=endpoint_row,
    )
)


# ------------------------------------------------------------------ deliveries


def load_delivery(s: Session, delivery_id: str, lock: bool) -> EventDelivery | None:
    pk = parse_id(delivery_id, big=True)
    if pk is None:
        return None
    stmt = (
        select(EventDelivery)
        .where(EventDelivery.id == pk)
        .options(joinedload(EventDelivery.event), joinedload(EventDelivery.endpoint))
    )
    if lock:
        stmt = stmt.with_for_update(of=EventDelivery, nowait=True)
    return s.scalars(stmt).unique().first()


def delivery_snapshot(d: EventDelivery) -> dict[str, Any]:
    return {
        "status": d.status.value,
        "attempts": d.attempts,
        "next_attempt_at": d.next_attempt_at,
        "last_status_code": d.last_status_code,
    }


def _redeliver_precondition(d: EventDelivery) -> str | None:
    if not d.endpoint.enabled:
        return "its endpoint is disabled: enable the endpoint first."
    due = d.next_attempt_at is not None and d.next_attempt_at <= utcnow()
    if d.status == DeliveryStatus.PENDING and due:
        return "it is already due and goes out on the next delivery run."
    return None


def _redeliver(ctx: ActionContext, d: EventDelivery) -> Outcome:
    dl.redeliver(d, utcnow())
    return Outcome(
        f"Delivery of {d.event.type} ({d.event.event_id}) to endpoint #{d.endpoint_id} is due "
        "now; the next delivery run sends it (same webhook-id, so the shop applies it once)."
    )


redeliver = declare(
    Action[EventDelivery](
        name="integrations:delivery:redeliver",
        label="Redeliver",
        permission=Permission.INTEGRATIONS_DELIVERY_REDELIVER,
        target_type="delivery",
        load=load_delivery,
        precondition=_redeliver_precondition,
        describe=lambda d: [
            (
                "Event",
                f"{d.event.type} {d.event.event_id} ({d.event.record_kind} "
                f"{d.event.record_id}, #{d.event.record_seq})",
            ),
            ("Endpoint", f"#{d.endpoint_id} {d.endpoint.url}"),
            ("Status", f"{d.status.value} after {d.attempts} attempt(s)"),
            (
                "Effect",
                "Queues the same event again now. The shop dedupes on webhook-id and record "
                "sequence, so a second copy is harmless.",
            ),
        ],
        effect=_redeliver,
        snapshot=delivery_snapshot,
        return_url=page_url,
        row=lambda d: ("integrations/index.html", "delivery_row", {"d": d}),
    )
)
