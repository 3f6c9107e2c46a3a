"""Reading the audit log: per-record history and the filtered list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, literal, or_, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from console.audit.models import AuditEntry

HISTORY_LIMIT = 100


def records_expr() -> Any:
    """The other records an action changed (`details.extra.records`; GIN index, 0009)."""
    return type_coerce(AuditEntry.details, JSONB)["extra"]["records"]


@dataclass(frozen=True)
class HistoryEntry:
    """An audit entry as one record's history shows it: with what it changed on that record."""

    entry: AuditEntry
    changes: list[tuple[str, Any, Any]]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.entry, name)


def changes_on(e: AuditEntry, target_type: str, target_id: str) -> list[tuple[str, Any, Any]]:
    """(field, before, after) for every field the entry changed on this record."""
    details = e.details or {}
    if e.target_type == target_type and e.target_id == target_id:
        before, after = details.get("before") or {}, details.get("after") or {}
    else:
        before = after = {}
        for rec in (details.get("extra") or {}).get("records") or []:
            if rec.get("type") == target_type and rec.get("id") == target_id:
                before, after = rec.get("before") or {}, rec.get("after") or {}
    keys = sorted({*before, *after})
    return [(k, before.get(k), after.get(k)) for k in keys if before.get(k) != after.get(k)]


def history_for(s: Session, target_type: str, target_id: str) -> Sequence[HistoryEntry]:
    """The newest entries about one record: its own actions (index on target, seq) and the
    actions on other records that changed it (`details.records`, GIN index)."""
    about = func.jsonb_build_array(
        func.jsonb_build_object(literal("type"), target_type, literal("id"), target_id)
    )
    entries = s.scalars(
        select(AuditEntry)
        .where(
            or_(
                (AuditEntry.target_type == target_type) & (AuditEntry.target_id == target_id),
                records_expr().op("@>")(about),
            )
        )
        .order_by(AuditEntry.seq.desc())
        .limit(HISTORY_LIMIT)
    ).all()
    return [HistoryEntry(e, changes_on(e, target_type, target_id)) for e in entries]
