"""Template helpers: money, times, permissions and the action buttons of a row."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from flask import Flask, request, url_for
from flask_login import current_user
from markupsafe import Markup

from console.actions.framework import Action, actions_for
from console.currency import format_money
from console.db import utcnow
from console.security.permissions import Permission


def money(amount: int | None, currency: str | None) -> str:
    """Format integer minor units with the currency's exponent: 4200 EUR -> '42.00 EUR'."""
    return format_money(amount, currency)


def ago(ts: datetime | None) -> str:
    """A short age: '3 min', '5 h', '2 d'."""
    if ts is None:
        return "—"
    seconds = int((utcnow() - ts).total_seconds())
    if seconds < 0:
        return "in " + ago(utcnow() - (ts - utcnow()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400 * 2:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d"


def timestamp(ts: datetime | None) -> Markup | str:
    if ts is None:
        return "—"
    iso = ts.strftime("%Y-%m-%dT%H:%M:%SZ")
    text = ts.strftime("%Y-%m-%d %H:%M UTC")
    return Markup('<time datetime="{}">{}</time>').format(iso, text)


def can(permission: str) -> bool:
    return bool(current_user.is_authenticated and current_user.can(Permission(permission)))


def _actor() -> Any:
    """The signed-in user, resolved once per request (a list page asks per button per row)."""
    cached = getattr(request, "_console_actor", None)
    if cached is None:
        cached = current_user._get_current_object()
        request._console_actor = cached  # type: ignore[attr-defined]
    return cached


def available_actions(target_type: str, target: Any) -> list[Action[Any]]:
    """The actions this user may run on this target now (buttons to show)."""
    user = _actor()
    if not user.is_authenticated:
        return []
    return [a for a in actions_for(target_type) if user.can(a.permission) and a.available(target)]


_TARGET = "__console_target__"


def action_href(action: Action[Any], target_id: Any, next_url: str | None = None) -> str:
    if next_url is None and request.method == "POST" and request.endpoint == "actions.act":
        # A row swapped in after an action: its buttons return to the page the person
        # acted from, not to the action's own URL.
        next_url = request.form.get("next") or None
    next_url = next_url or request.full_path.rstrip("?")
    # url_for once per action and page, the row's id put in as the route's converter
    # would quote it: a page of 50 rows with three buttons each built 150 URLs.
    cache: dict[tuple[str, str], str] | None = getattr(request, "_console_hrefs", None)
    if cache is None:
        cache = {}
        request._console_hrefs = cache  # type: ignore[attr-defined]
    key = (action.name, next_url)
    pattern = cache.get(key)
    if pattern is None:
        pattern = url_for("actions.act", name=action.name, target_id=_TARGET, next=next_url)
        cache[key] = pattern
    return pattern.replace(_TARGET, quote(str(target_id), safe="!$&'()*+,/:;=@"), 1)


def init_templating(app: Flask) -> None:
    app.jinja_env.filters.update(money=money, ago=ago, timestamp=timestamp)
    app.jinja_env.globals.update(
        can=can,
        available_actions=available_actions,
        action_href=action_href,
        Permission=Permission,
    )

    @app.context_processor
    def _inject() -> dict[str, Any]:
        return {"settings": app.config["SETTINGS"]}
