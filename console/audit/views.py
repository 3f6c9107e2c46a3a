"""The audit log pages: a filterable list, one entry, and the export page."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, abort, render_template, request
from flask_login import login_required
from sqlalchemy import Select, select

from console import db
from console.audit.models import AuditEntry
from console.pagination import SortOption, keyset_page
from console.security.guards import require
from console.security.permissions import Permission

bp = Blueprint("audit", __name__)

FILTERS = ("actor", "action", "target_type", "target_id", "outcome", "since", "until")


def parse_time(raw: str | None) -> datetime | None:
    """Accept `2026-11-03`, `2026-11-03T14:02` or full ISO; always UTC."""
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def filtered(args: dict[str, str]) -> tuple[Select[Any], dict[str, str], list[str]]:
    """Apply the URL's filters; return the statement, the filters used, and errors."""
    stmt = select(AuditEntry)
    used: dict[str, str] = {}
    errors: list[str] = []
    actor = args.get("actor", "").strip()
    if actor:
        stmt = stmt.where((AuditEntry.actor_email == actor) | (AuditEntry.actor_sub == actor))
        used["actor"] = actor
    action = args.get("action", "").strip()
    if action:
        if action.endswith("*"):
            stmt = stmt.where(AuditEntry.action.startswith(action[:-1], autoescape=True))
        else:
            stmt = stmt.where(AuditEntry.action == action)
        used["action"] = action
    for key, col in (("target_type", AuditEntry.target_type), ("target_id", AuditEntry.target_id)):
        value = args.get(key, "").strip()
        if value:
            stmt = stmt.where(col == value)
            used[key] = value
    outcome = args.get("outcome", "").strip()
    if outcome:
        if outcome not in ("success", "denied", "failed"):
            errors.append("Outcome must be success, denied or failed.")
        else:
            stmt = stmt.where(AuditEntry.outcome == outcome)
            used["outcome"] = outcome
    for key, op in (("since", "ge"), ("until", "lt")):
        raw = args.get(key, "").strip()
        if not raw:
            continue
        when = parse_time(raw)
        if when is None:
            errors.append(f"'{raw}' is not a date or time (use 2026-11-03 or 2026-11-03T14:02).")
            continue
        stmt = stmt.where(AuditEntry.ts >= when if op == "ge" else AuditEntry.ts < when)
        used[key] = raw
    return stmt, used, errors


@bp.get("/audit")
@login_required
@require(Permission.AUDIT_VIEW)
def index() -> Any:
    """The audit log, newest first, filtered by the URL."""
    args = request.args.to_dict()
    stmt, used, errors = filtered(args)
    page = keyset_page(
        db.session(),
        stmt,
        id_column=AuditEntry.seq,
        sort_options=[SortOption("seq", "Sequence", AuditEntry.seq)],
        args=args,
        default_sort="seq",
    )
    return render_template("audit/index.html", page=page, used=used, errors=errors, args=args)


@bp.get("/audit/<int:seq>")
@login_required
@require(Permission.AUDIT_VIEW)
def entry(seq: int) -> Any:
    """One entry with its before/after, hash and canonical form."""
    e = db.session().get(AuditEntry, seq)
    if e is None:
        abort(404, f"There is no audit entry #{seq}.")
    return render_template("audit/entry.html", e=e)


@bp.get("/audit/export")
@login_required
@require(Permission.AUDIT_EXPORT)
def export_page() -> Any:
    """The export page (the signed bundle download arrives with the export service)."""
    return render_template("audit/export.html", args=request.args.to_dict())
