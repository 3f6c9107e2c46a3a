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
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from console.audit.models import AuditChainHead, AuditEntry
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

    The chain head row is locked (FOR UPDATE), so concurrent appends are
    serialized until the caller commits:
    append last, just before the commit.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}")
    # The chain can never forget what it hashed: no card number reaches it, even
    # in text the framework did not write (a target id from a crafted URL).
    reason, ticket, target_id = (
        mask_pans(v) if isinstance(v, str) else v for v in (reason, ticket, target_id)
    )
    head = s.execute(
        select(AuditChainHead).where(AuditChainHead.id == 1).with_for_update()
    ).scalar_one_or_none()
    if head is None:
        head = AuditChainHead(id=1, last_seq=0, last_hash=GENESIS_HASH)
        s.add(head)
        s.flush()
    seq = head.last_seq + 1
    ts = utcnow()
    actor = dict(actor or {})
    body: dict[str, Any] = {
        "_prev_hash": head.last_hash,
        "_seq": seq,
        "action": action,
        "actor": {
            "email": actor.get("email"),
            "roles": sorted(actor.get("roles") or []),
            "sub": actor.get("sub"),
        },
        "after": redact(dict(after)) if after is not None else None,
        "before": redact(dict(before)) if before is not None else None,
        "details": redact(dict(details)) if details else {},
        "outcome": outcome,
        "params": redact(dict(params)) if params else {},
        "reason": reason,
        "request": redact(dict(request)) if request else {},
        "target": {"id": target_id, "type": target_type},
        "ticket": ticket,
        "ts": format_ts(ts),
    }
    canonical = canonical_json(body)
    digest = entry_hash(canonical)
    entry = AuditEntry(
        seq=seq,
        ts=ts,
        actor_sub=body["actor"]["sub"],
        actor_email=body["actor"]["email"],
        actor_roles=body["actor"]["roles"],
        action=action,
        target_type=target_type,
        target_id=target_id,
        outcome=outcome,
        reason=reason,
        ticket=ticket,
        request_id=(request or {}).get("id"),
        ip=(request or {}).get("ip"),
        details={
            "before": body["before"],
            "after": body["after"],
            "params": body["params"],
            "extra": body["details"],
            "user_agent": body["request"].get("user_agent"),
        },
        prev_hash=head.last_hash,
        hash=digest,
        canonical=canonical,
    )
    s.add(entry)
    head.last_seq = seq
    head.last_hash = digest
    s.flush()
    return entry


def parse_canonical_position(canonical: str) -> tuple[str, int]:
    """Read (`_prev_hash`, `_seq`) from the fixed start of a canonical form."""
    if not canonical.startswith('{"_prev_hash":"') or canonical[79:88] != '","_seq":':
        raise ValueError("not a canonical audit entry")
    end = canonical.index(",", 88)
    return canonical[15:79], int(canonical[88:end])
