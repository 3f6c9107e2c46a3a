"""Template helpers: money, times, permissions and the action buttons of a row."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from flask import Flask, request, url_for
from flask_login import current_user
from markupsafe import Markup, escape

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
    # Digits, dashes and colons only: nothing to escape (Markup.format, which escapes
    # every argument, was a tenth of a list page's rendering time, issue 15).
    ts = ts.astimezone(UTC)
    date = f"{ts.year:04d}-{ts.month:02d}-{ts.day:02d}"
    hm = f"{ts.hour:02d}:{ts.minute:02d}"
    return Markup(  # noqa: S704
        f'<time datetime="{date}T{hm}:{ts.second:02d}Z">{date} {hm} UTC</time>'
    )


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
    # The actions this user's roles allow, once per request and kind of target; per row
    # only the preconditions.
    allowed: dict[str, list[Action[Any]]] | None = getattr(request, "_console_allowed", None)
    if allowed is None:
        allowed = {}
        request._console_allowed = allowed  # type: ignore[attr-defined]
    mine = allowed.get(target_type)
    if mine is None:
        mine = allowed[target_type] = [
            a for a in actions_for(target_type) if user.can(a.permission)
        ]
    return [a for a in mine if a.available(target)]


_TARGET = "__console_target__"
_PATH_SAFE = "!$&'()*+,/:;=@"  # werkzeug's default converter (BaseConverter.to_url)


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
    return pattern.replace(_TARGET, quote(str(target_id), _PATH_SAFE), 1)


def action_buttons(target_type: str, target: Any, target_id: Any) -> Markup:
    """A row's action links: one `<a data-dialog>` per action this user may run on it now.

    static/console.js opens `data-dialog` links in the shared dialog (one
    delegated handler); without JavaScript they are plain links to the
    action's page. Built here rather than in a Jinja macro: a page of 50 rows
    called the macro 50-100 times, and the macro machinery plus the per-row
    template import cost more than the rest of the row (issue 15). The HTML
    of each set of buttons is kept per request, so a row costs the
    preconditions and one substitution of its id.
    """
    acts = available_actions(target_type, target)
    if not acts:
        return Markup("")
    cache: dict[tuple[str, ...], str] | None = getattr(request, "_console_buttons", None)
    if cache is None:
        cache = {}
        request._console_buttons = cache  # type: ignore[attr-defined]
    key = tuple(a.name for a in acts)
    html = cache.get(key)
    if html is None:
        links = "".join(
            f'<a class="button{" danger" if a.danger else ""}" '
            f'href="{escape(action_href(a, _TARGET))}" data-dialog>{escape(a.label)}</a>'
            for a in acts
        )
        html = cache[key] = f'<div class="actions">{links}</div>'
    quoted = quote(str(target_id), _PATH_SAFE)
    # Every piece is escaped above (labels, hrefs) or here (the id): safe to mark.
    return Markup(html.replace(_TARGET, str(escape(quoted))))  # noqa: S704


_INT_SENTINEL = 7_123_456_789_000_000_000  # a 19-digit id no page links to (< 2**63)
# A URL split at its values: the literal pieces, and which value (by index) goes between
# two pieces with how it is written. None: this endpoint's URL is built by url_for.
_Pattern = tuple[tuple[str, ...], tuple[tuple[int, str], ...]] | None


def page_url_for(endpoint: str, **values: Any) -> str:
    """`url_for` for templates, built once per request for each endpoint and set of names.

    A list page links every row to its record (`url_for('orders.detail',
    external_id=...)`): 100+ route builds per page, each a walk of werkzeug's
    rules. The first call builds the URL with placeholders for the values and
    splits it there; later calls join the pieces with each row's values: text
    quoted as werkzeug's default converter quotes a path segment, a
    non-negative int as the `int` converter writes it. Only URLs whose values
    all sit in the path are kept (a query string, another converter, a None,
    `_external` and the like go to `url_for` every time).
    """
    if not values or any(k[0] == "_" or v is None for k, v in values.items()):
        return url_for(endpoint, **values)
    cache: dict[tuple[str, ...], _Pattern] | None = getattr(request, "_console_urls", None)
    if cache is None:
        cache = {}
        request._console_urls = cache  # type: ignore[attr-defined]
    names = sorted(values)
    kinds = ["i" if type(values[n]) is int and values[n] >= 0 else "s" for n in names]
    key = (endpoint, *names, *kinds)
    if key in cache:
        pattern = cache[key]
    else:
        pattern = cache[key] = _url_pattern(endpoint, names, kinds)
    if pattern is None:
        return url_for(endpoint, **values)
    pieces, slots = pattern
    out = [pieces[0]]
    for (i, kind), piece in zip(slots, pieces[1:], strict=True):
        value = values[names[i]]
        out.append(str(value) if kind == "i" else quote(str(value), _PATH_SAFE))
        out.append(piece)
    return "".join(out)


def _url_pattern(endpoint: str, names: list[str], kinds: list[str]) -> _Pattern:
    sentinels = [
        str(_INT_SENTINEL + i) if kind == "i" else f"__console_url_{i}__"
        for i, kind in enumerate(kinds)
    ]
    args: dict[str, Any] = {
        name: int(sentinel) if kind == "i" else sentinel
        for name, kind, sentinel in zip(names, kinds, sentinels, strict=True)
    }
    try:
        built = url_for(endpoint, **args)
    except Exception:  # a converter refuses the placeholder: build each URL normally
        return None
    if "?" in built or any(built.count(v) != 1 for v in sentinels):
        return None
    at = sorted((built.index(v), i) for i, v in enumerate(sentinels))
    pieces, slots, start = [], [], 0
    for position, i in at:
        pieces.append(built[start:position])
        slots.append((i, kinds[i]))
        start = position + len(sentinels[i])
    pieces.append(built[start:])
    return tuple(pieces), tuple(slots)


def init_templating(app: Flask) -> None:
    app.jinja_env.filters.update(money=money, ago=ago, timestamp=timestamp)
    app.jinja_env.globals.update(
        can=can,
        available_actions=available_actions,
        action_href=action_href,
        action_buttons=action_buttons,
        url_for=page_url_for,
        Permission=Permission,
    )

    @app.context_processor
    def _inject() -> dict[str, Any]:
        return {"settings": app.config["SETTINGS"]}
