"""The audit log pages: a filterable list, one entry, and the export page."""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from flask import Blueprint, abort, current_app, render_template, request, send_file
from flask_login import current_user, login_required
from sqlalchemy import ColumnElement, DateTime, Select, cast, func, literal, or_, select
from sqlalchemy.orm import aliased

from console import db
from console.audit.chain import display_differences, display_problems
from console.audit.export import (
    FORMATS,
    ExportError,
    archive,
    demo_key_note,
    fingerprint,
    load_signing_key,
    public_pem,
    write_bundle,
)
from console.audit.models import AuditChainHead, AuditEntry
from console.audit.service import audited_access, record
from console.db import utcnow
from console.pagination import SortOption, keyset_page
from console.params import parse_time
from console.security.guards import require
from console.security.permissions import Permission

bp = Blueprint("audit", __name__)
log = logging.getLogger(__name__)
VERIFIER = Path(__file__).with_name("verify.py")


def verifier_sha256() -> str:
    return hashlib.sha256(VERIFIER.read_bytes()).hexdigest()


FILTERS = ("actor", "action", "target_type", "target_id", "outcome", "since", "until")


def filtered(args: dict[str, str]) -> tuple[Select[Any], dict[str, str], list[str]]:
    """Apply the URL's filters; return the statement, the filters used, and errors."""
    stmt, any_of, used, errors = filter_parts(args)
    return (stmt.where(or_(*any_of)) if any_of else stmt), used, errors


def filter_parts(
    args: dict[str, str],
) -> tuple[Select[Any], list[ColumnElement[bool]], dict[str, str], list[str]]:
    """Apply the URL's filters: the statement, the conditions of which a row must meet
    one (the actor's email or sub, for keyset_page's `any_of`), the filters used, errors."""
    stmt = select(AuditEntry)
    any_of: list[ColumnElement[bool]] = []
    used: dict[str, str] = {}
    errors: list[str] = []
    actor = args.get("actor", "").strip()
    if actor:
        any_of = [AuditEntry.actor_email == actor, AuditEntry.actor_sub == actor]
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
    window: list[tuple[str, Any]] = []
    for key, op in (("since", "ge"), ("until", "lt")):
        raw = args.get(key, "").strip()
        if not raw:
            continue
        when = parse_time(raw)
        if when is None:
            errors.append(f"'{raw}' is not a date or time (use 2026-11-03 or 2026-11-03T14:02).")
            continue
        window.append((op, when))
        used[key] = raw
    if window:
        stmt = stmt.where(*_in_window(AuditEntry, window), *seq_bounds(window))
    return stmt, any_of, used, errors


def _in_window(entity: Any, window: list[tuple[str, Any]]) -> list[Any]:
    return [entity.ts >= when if op == "ge" else entity.ts < when for op, when in window]


def seq_bounds(window: list[tuple[str, Any]]) -> list[Any]:
    """Bounds in seq for a time window, from one index probe per side.

    The list is ordered by seq and `ts` follows seq except where clocks differ,
    so a time window is not quite a seq range. The chain head keeps D, the most
    an entry's time was ever earlier than an entry's before it (migration 0012,
    moved by the append trigger). So an entry timed before `since - D` precedes
    every entry in the window (were it after one, its time would be at least that
    one's minus D), and one timed at or after `until + D` follows them all: the
    nearest such entry on each side (ix_audit_entries_ts_seq, one probe) bounds the
    walk, and the `ts` filter keeps the page exact. Reading the window's own lowest
    and highest seq instead walked every entry in it (10 ms a month at a million
    entries; everything newer for a `since` alone).
    """
    disorder = select(AuditChainHead.max_disorder).where(AuditChainHead.id == 1).scalar_subquery()
    inner = aliased(AuditEntry)
    bounds: list[Any] = []
    for op, when in window:
        edge = cast(literal(when), DateTime(timezone=True))
        if op == "ge":
            before = (
                select(inner.seq)
                .where(inner.ts < edge - disorder)
                .order_by(inner.ts.desc(), inner.seq.desc())
                .limit(1)
                .scalar_subquery()
            )
            bounds.append(AuditEntry.seq > func.coalesce(before, 0))
        else:
            after = (
                select(inner.seq)
                .where(inner.ts >= edge + disorder)
                .order_by(inner.ts.asc(), inner.seq.asc())
                .limit(1)
                .scalar_subquery()
            )
            bounds.append(AuditEntry.seq < func.coalesce(after, 2**63 - 1))
    return bounds


@bp.app_template_filter("audit_problems")
def audit_problems(e: AuditEntry) -> list[str]:
    """How a stored row differs from what was hashed (pages flag it where it is read)."""
    problems = display_problems(e)
    if problems:
        log.critical("audit entry %s differs from what was hashed: %s", e.seq, "; ".join(problems))
    return problems


@bp.get("/audit")
@login_required
@require(Permission.AUDIT_VIEW)
@audited_access("audit:log:view")
def index() -> Any:
    """The audit log, newest first, filtered by the URL; every view is itself an entry."""
    args = request.args.to_dict()
    stmt, any_of, used, errors = filter_parts(args)
    page = keyset_page(
        db.session(),
        stmt,
        any_of=any_of,
        id_column=AuditEntry.seq,
        sort_options=[SortOption("seq", "Sequence", AuditEntry.seq)],
        args=args,
        default_sort="seq",
    )
    status = 400 if errors else 200
    html = render_template("audit/index.html", page=page, used=used, errors=errors, args=args)
    return html, status


@bp.get("/audit/<int(min=1, max=9223372036854775807):seq>")
@login_required
@require(Permission.AUDIT_VIEW)
@audited_access("audit:entry:view", target=lambda kw: ("audit_entry", str(kw.get("seq"))))
def entry(seq: int) -> Any:
    """One entry with its before/after, hash and canonical form."""
    e = db.session().get(AuditEntry, seq)
    if e is None:
        abort(404, f"There is no audit entry #{seq}.")
    return render_template("audit/entry.html", e=e, differences=display_differences(e))


@bp.get("/audit/export/verify_bundle.py")
@login_required
@require(Permission.AUDIT_EXPORT)
@audited_access("audit:verifier:download")
def verifier() -> Any:
    """The stand-alone verifier: one file that needs only Python and `cryptography`."""
    resp = send_file(
        VERIFIER,
        mimetype="text/x-python",
        as_attachment=True,
        download_name="verify_bundle.py",
    )
    resp.headers["X-Content-SHA256"] = verifier_sha256()
    return resp


@bp.get("/audit/export")
@login_required
@require(Permission.AUDIT_EXPORT)
@audited_access("audit:export_page:view")
def export_page() -> Any:
    """Choose a selection to export; shows the public key and how to verify offline."""
    args = request.args.to_dict()
    _stmt, used, errors = filtered(args)
    settings = current_app.config["SETTINGS"]
    try:
        key = load_signing_key(settings, current_app.instance_path)
        public = key.public_key()
        key_info: dict[str, str] | None = {
            "pem": public_pem(public).decode(),
            "fingerprint": fingerprint(public),
        }
        key_error = None
    except ExportError as exc:
        key_info, key_error = None, str(exc)
    return render_template(
        "audit/export.html",
        args=args,
        used=used,
        errors=errors,
        key=key_info,
        key_error=key_error,
        key_note=demo_key_note(settings, current_app.instance_path) if key_info else None,
        verifier_sha256=verifier_sha256(),
    ), (400 if errors else 200)


@bp.get("/audit/export/download")
@login_required
@require(Permission.AUDIT_EXPORT)
@audited_access("audit:log:export", on_success=False)
def export_download() -> Any:
    """Stream a signed bundle of the selection as one .tar.gz; the export is audited."""
    args = request.args.to_dict()
    fmt = args.pop("format", "jsonl")
    if fmt not in FORMATS:
        abort(400, "Format must be jsonl or csv.")
    stmt, used, errors = filtered(args)
    if errors:
        abort(400, " ".join(errors))
    try:
        key = load_signing_key(current_app.config["SETTINGS"], current_app.instance_path)
    except ExportError as exc:
        abort(503, str(exc))
    s = db.session()
    workdir = Path(tempfile.mkdtemp(prefix="audit-bundle-"))
    try:
        bundle = write_bundle(
            s,
            stmt,
            out_dir=workdir / "bundle",
            fmt=fmt,
            filters=used,
            exporter={"sub": current_user.sub, "email": current_user.email},
            key=key,
        )
        tarball = archive(bundle)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    m = bundle.manifest
    record(
        s,
        action="audit:log:export",
        outcome="success",
        target_type="audit_log",
        target_id=f"{m['first_seq']}..{m['last_seq']}",
        params={"format": fmt, **used},
        details={"count": m["count"], "data_sha256": m["data_sha256"]},
    )
    s.commit()
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    handle = tarball.open("rb")
    tarball.unlink()  # the open handle keeps the data until the response is sent
    return send_file(
        handle,
        mimetype="application/gzip",
        as_attachment=True,
        download_name=f"audit-export-{stamp}.tar.gz",
    )
