"""Per-shop API keys: generated here, shown once, stored as a SHA-256 of the secret.

A token reads `csk_<prefix>_<secret>`; the prefix finds the row, the hash of
the whole token is compared in constant time. The secret has 256 bits, so a
plain SHA-256 is enough (nothing to brute-force, unlike a password).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from console.db import utcnow
from console.integrations.models import ApiKey

TOKEN_PREFIX = "csk_"  # noqa: S105  (a public marker, not a secret)
# Scopes are record kinds: a key may upsert and read the kinds it names.
SCOPES = (
    "orders",
    "reservations",
    "invoices",
    "payouts",
    "inventory",
    "coupons",
    "supplier_syncs",
)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """Return (prefix, token)."""
    prefix = secrets.token_hex(6)
    return prefix, f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"


@dataclass
class IssuedKey:
    key: ApiKey
    token: str


def issue_key(s: Session, *, name: str, shop: str, scopes: list[str], actor_sub: str) -> IssuedKey:
    """Create a key; the caller shows `token` once and never stores it."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(unknown)}")
    prefix, token = new_token()
    key = ApiKey(
        name=name,
        shop=shop,
        prefix=prefix,
        secret_hash=token_hash(token),
        scopes=sorted(set(scopes)),
        created_by_sub=actor_sub,
    )
    s.add(key)
    s.flush()
    return IssuedKey(key, token)


def rotate_key(s: Session, old: ApiKey, *, overlap: timedelta, actor_sub: str) -> IssuedKey:
    """A new key with the same name and scopes; the old one works until the overlap ends."""
    issued = issue_key(
        s, name=old.name, shop=old.shop, scopes=list(old.scopes), actor_sub=actor_sub
    )
    issued.key.rotated_from_id = old.id
    ends = utcnow() + overlap
    old.expires_at = min(old.expires_at, ends) if old.expires_at else ends
    return issued


def revoke_key(key: ApiKey, *, actor_sub: str) -> None:
    key.revoked_at = utcnow()
    key.revoked_by_sub = actor_sub


def key_state(key: ApiKey, now: datetime) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    if key.expires_at is not None:
        return "expiring"
    return "active"


class AuthFailure(Exception):
    def __init__(self, status: int, title: str, detail: str, key: ApiKey | None = None):
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.key = key


def authenticate(s: Session, authorization: str | None, now: datetime) -> ApiKey:
    """Resolve `Authorization: Bearer csk_...` to a usable key, or raise AuthFailure."""
    if not authorization:
        raise AuthFailure(401, "Authentication required", "Send Authorization: Bearer <api key>.")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX):
        raise AuthFailure(401, "Authentication required", "Send Authorization: Bearer <api key>.")
    prefix = token[len(TOKEN_PREFIX) :].split("_", 1)[0]
    if not prefix or len(prefix) > 32 or not prefix.isalnum():
        raise AuthFailure(401, "Invalid API key", "The API key is not valid.")
    key = s.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None or not hmac.compare_digest(key.secret_hash, token_hash(token)):
        raise AuthFailure(401, "Invalid API key", "The API key is not valid.")
    state = key_state(key, now)
    if state == "revoked":
        raise AuthFailure(401, "API key revoked", "This API key was revoked.", key)
    if state == "expired":
        raise AuthFailure(
            401, "API key expired", "This API key was rotated and its overlap ended.", key
        )
    return key


def api_actor(key: ApiKey) -> dict[str, Any]:
    """The audit actor of a write through the API: the key, never a person."""
    if key.id is None:  # the backfill command's stand-in key: the person at the CLI
        return {"sub": key.created_by_sub, "email": None, "roles": ["cli"]}
    return {"sub": f"api-key:{key.prefix}", "email": None, "roles": ["api"]}
