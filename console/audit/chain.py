"""Canonical form, hashing and appending of audit entries.

An entry is hashed over its canonical JSON (sorted keys, no whitespace,
UTF-8). The chain fields are named `_prev_hash` and `_seq` so that, keys
being sorted, every canonical form starts `{"_prev_hash":"<64 hex>","_seq":N,`:
a verifier reads the chain position without parsing the JSON.
An export line is `{"entry":<canonical>,"hash":"<64 hex>"}` (itself sorted).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from console.audit.models import AuditEntry
from console.cardnumbers import mask_pans
from console.db import utcnow

GENESIS_HASH = "0" * 64
OUTCOMES = ("success", "denied", "failed")
LINE_PREFIX = '{"entry":'
LINE_SUFFIX_LEN = len(',"hash":"') + 64 + len('"}')

_SECRET_KEY = re.compile(
    r"(secret|token|password|passwd|authorization|api[_-]?key|cookie|cvc|cvv|card[_-]?number|"
    r"^number$|client[_-]?secret|signature|private)",
    re.IGNORECASE,
)
_CARD_NUMBER = re.compile(r"\b(?:\d[ -]?){13,19}\b")
_STRIPE_SECRET = re.compile(r"\b(sk|rk|whsec)_(live|test)?_?[A-Za-z0-9]{6,}\b")
REDACTED = "[redacted]"


def redact(value: Any, key: str | None = None) -> Any:
    """Return a copy with secrets, tokens and card numbers replaced."""
    if key is not None and _SECRET_KEY.search(key):
        return REDACTED
    if isinstance(value, Mapping):
        return {str(k): redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        value = _STRIPE_SECRET.sub(REDACTED, value)
        return mask_pans(_CARD_NUMBER.sub(REDACTED, value))
    if isinstance(value, datetime):
        return format_ts(value)
    return value


def format_ts(ts: datetime) -> str:
    """ISO 8601 in UTC with microseconds and a Z."""
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_UNESCAPED_CONTROL = re.compile("[\x7f-\x9f]")


def canonical_json(obj: Any) -> str:
    """Serialize the one way the hash is taken: sorted keys, no whitespace.

    JSON escapes the C0 controls itself; DEL and the C1 controls (0x9b is a
    one-byte ANSI escape introducer) are escaped too, so the canonical bytes
    (exported verbatim in JSONL and CSV) hold no control character at all.
    """
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return _UNESCAPED_CONTROL.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


def entry_hash(canonical: str) -> str:
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def export_line(canonical: str, digest: str) -> str:
    return f'{LINE_PREFIX}{canonical},"hash":"{digest}"}}'


# Column widths of the filterable copies (models.AuditEntry): longer values are cut.
LIMITS = {
    "action": 128,
    "target.type": 64,
    "target.id": 128,
    "ticket": 128,
    "actor.sub": 255,
    "actor.email": 320,
    "request.id": 64,
    "request.ip": 64,
    "reason": 4000,
}
REPLACEMENT = "\ufffd"


def _storable(text: str) -> str:
    """The text with what PostgreSQL cannot store (NUL, lone surrogates) replaced."""
    if "\x00" in text:
        text = text.replace("\x00", REPLACEMENT)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def sanitise(value: Any, path: str, changed: list[str]) -> Any:
    """Make a value storable as given where possible; note each path that had to change."""
    if isinstance(value, str):
        clean = _storable(value)
        limit = LIMITS.get(path)
        if limit is not None and len(clean) > limit:
            clean = clean[: limit - 1] + "\u2026"
        if clean != value:
            changed.append(path)
        return clean
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = sanitise(str(k), f"{path}.<key>", changed)
            out[key] = sanitise(v, f"{path}.{key}" if path else key, changed)
        return out
    if isinstance(value, list | tuple):
        return [sanitise(v, f"{path}[]", changed) for v in value]
    if isinstance(value, float) and not math.isfinite(value):  # NaN and infinities are not JSON
        changed.append(path)
        return None
    if value is None or isinstance(value, bool | int | float):
        return value
    changed.append(path)  # a type JSON has not (Decimal, UUID, ...): kept as its text
    return _storable(str(value))


def lock_head(s: Session) -> tuple[int, str]:
    """Lock the chain head for this transaction; return (last seq, last hash).

    Through `audit_chain_head_lock()` (migration 0005): the application role
    may not lock or write the head row itself.
    """
    row = s.execute(text("SELECT last_seq, last_hash FROM audit_chain_head_lock()")).one_or_none()
    if row is None:
        raise RuntimeError("the audit chain head row is missing")
    return int(row[0]), str(row[1])


def append(
    s: Session,
    *,
    action: str,
    outcome: str,
    actor: Mapping[str, Any] | None,
    target_type: str | None = None,
    target_id: str | None = None,
    reason: str | None = None,
    ticket: str | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    request: Mapping[str, Any] | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append an entry to the chain inside the caller's transaction.

    The chain head is locked until the caller commits, so concurrent appends
    are serialized: append last, just before the commit. Values that cannot
    be stored as given (NUL bytes, broken UTF-16, over-long ids) are made
    storable and the entry says which fields were changed (`details.sanitised`),
    so a refusal is never lost because of what it refused.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}")
    # The chain can never forget what it hashed: no card number reaches it, even
    # in text the framework did not write (a target id from a crafted URL).
    reason, ticket, target_id = (
        mask_pans(v) if isinstance(v, str) else v for v in (reason, ticket, target_id)
    )
    last_seq, last_hash = lock_head(s)
    seq = last_seq + 1
    ts = utcnow()
    actor = dict(actor or {})
    changed: list[str] = []
    extra = redact(dict(details)) if details else {}
    body: dict[str, Any] = sanitise(
        {
            "action": action,
            "actor": {
                "email": actor.get("email"),
                "roles": sorted(actor.get("roles") or []),
                "sub": actor.get("sub"),
            },
            "after": redact(dict(after)) if after is not None else None,
            "before": redact(dict(before)) if before is not None else None,
            "details": extra,
            "outcome": outcome,
            "params": redact(dict(params)) if params else {},
            "reason": reason,
            "request": redact(dict(request)) if request else {},
            "target": {"id": target_id, "type": target_type},
            "ticket": ticket,
        },
        "",
        changed,
    )
    if changed:
        body["details"] = {**body["details"], "sanitised": sorted(set(changed))}
    body.update({"_prev_hash": last_hash, "_seq": seq, "ts": format_ts(ts)})
    canonical = canonical_json(body)
    digest = entry_hash(canonical)
    entry = AuditEntry(
        seq=seq,
        ts=ts,
        actor_sub=body["actor"]["sub"],
        actor_email=body["actor"]["email"],
        actor_roles=body["actor"]["roles"],
        action=body["action"],
        target_type=body["target"]["type"],
        target_id=body["target"]["id"],
        outcome=outcome,
        reason=body["reason"],
        ticket=body["ticket"],
        request_id=body["request"].get("id"),
        ip=body["request"].get("ip"),
        details=display_details(body),
        prev_hash=last_hash,
        hash=digest,
        canonical=canonical,
    )
    s.add(entry)
    s.flush()
    s.info.setdefault(PENDING_CHECKPOINTS, []).append((seq, digest))
    return entry


PENDING_CHECKPOINTS = "audit_appended"


def display_details(body: Mapping[str, Any]) -> dict[str, Any]:
    """The `details` column as the append trigger derives it from the canonical form."""
    return {
        "before": body.get("before"),
        "after": body.get("after"),
        "params": body.get("params"),
        "extra": body.get("details"),
        "user_agent": (body.get("request") or {}).get("user_agent"),
    }


def display_columns(body: Mapping[str, Any]) -> dict[str, Any]:
    """Every filterable column of an entry, derived from its parsed canonical form."""
    actor = body.get("actor") or {}
    target = body.get("target") or {}
    request = body.get("request") or {}
    return {
        "seq": body.get("_seq"),
        "prev_hash": body.get("_prev_hash"),
        "ts": body.get("ts"),
        "actor_sub": actor.get("sub"),
        "actor_email": actor.get("email"),
        "actor_roles": actor.get("roles") or [],
        "action": body.get("action"),
        "target_type": target.get("type"),
        "target_id": target.get("id"),
        "outcome": body.get("outcome"),
        "reason": body.get("reason"),
        "ticket": body.get("ticket"),
        "request_id": request.get("id"),
        "ip": request.get("ip"),
        "details": display_details(body),
    }


def display_differences(entry: AuditEntry) -> list[tuple[str, Any, Any]]:
    """(column, stored value, hashed value) for each column that is not what was hashed."""
    try:
        body = json.loads(entry.canonical)
    except ValueError:
        return [("canonical", entry.canonical[:200], "(not JSON)")]
    if not isinstance(body, dict):
        return [("canonical", entry.canonical[:200], "(not an object)")]
    stored = {
        "seq": entry.seq,
        "prev_hash": entry.prev_hash,
        "ts": format_ts(entry.ts) if entry.ts is not None else None,
        "actor_sub": entry.actor_sub,
        "actor_email": entry.actor_email,
        "actor_roles": list(entry.actor_roles or []),
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "outcome": entry.outcome,
        "reason": entry.reason,
        "ticket": entry.ticket,
        "request_id": entry.request_id,
        "ip": entry.ip,
        "details": entry.details,
    }
    return [
        (column, stored[column], value)
        for column, value in display_columns(body).items()
        if not _same(stored[column], value)
    ]


def _same(a: Any, b: Any) -> bool:
    """Equal in canonical form; strings, ints, booleans and None of one type compared
    directly, lists and dicts item by item.

    (Only exact types: 1 == True in Python, not in JSON. Anything else, or two
    different types, goes through the canonical form.)
    """
    kind = type(a)
    if kind is type(b):
        if a is None or kind in (str, int, bool):
            return bool(a == b)
        # Lists and dicts compared item by item, each item by these rules: serializing
        # both sides of every row's details was a sixth of an audit page (issue 15).
        if kind is list:
            return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
        if kind is dict:
            return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return canonical_json(a) == canonical_json(b)


def display_problems(entry: AuditEntry) -> list[str]:
    """How the stored row differs from what was hashed (empty when it does not).

    The pages show the filterable columns; this says, per row, whether they
    are still what the canonical form holds, and whether that form still
    hashes to the stored hash, so an edit made behind the application's back
    is flagged where it is read.
    """
    problems: list[str] = []
    if entry_hash(entry.canonical) != entry.hash:
        problems.append("its hash does not match its canonical form")
    problems.extend(
        f"{column} differs from what was hashed" for column, _, _ in (display_differences(entry))
    )
    return problems


def parse_canonical_position(canonical: str) -> tuple[str, int]:
    """Read (`_prev_hash`, `_seq`) from the fixed start of a canonical form."""
    if not canonical.startswith('{"_prev_hash":"') or canonical[79:88] != '","_seq":':
        raise ValueError("not a canonical audit entry")
    end = canonical.index(",", 88)
    return canonical[15:79], int(canonical[88:end])
