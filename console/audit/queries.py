"""Reading the audit log: per-record history and the filtered list."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from console.audit.models import AuditEntry

HISTORY_LIMIT = 100


def history_for(s: Session, target_type: str, target_id: str) -> Sequence[AuditEntry]:
    """The newest entries about one record (index on target, seq)."""
    return s.scalars(
        select(AuditEntry)
        .where(AuditEntry.target_type == target_type, AuditEntry.target_id == target_id)
        .order_by(AuditEntry.seq.desc())
        .limit(HISTORY_LIMIT)
    ).all()
