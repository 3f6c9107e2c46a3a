"""Signed checkpoints of the chain, kept outside the database.

A checkpoint is a statement `{"hash", "key_sha256", "kind", "seq", "time",
"version"}` (canonical JSON) and its Ed25519 signature: "at `time` the log
ran through entry `seq`, whose hash was `hash`". It is written to the
checkpoint directory (`AUDIT_CHECKPOINT_DIR`; in production a write-once
bucket or a volume the database's administrators cannot write) and to the
application log, after every `AUDIT_CHECKPOINT_EVERY` entries and by the
hourly `audit checkpoint` job. A database owner who rewrites or truncates the
tail afterwards cannot produce a matching bundle: `audit verify --checkpoints`
names the first sequence number that went missing or changed.

Before writing, the job checks that the newest checkpoint in the directory
still matches the database, so tampering is also reported within the hour,
not only when someone next verifies an export.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import current_app, has_app_context
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from console.audit.chain import PENDING_CHECKPOINTS, canonical_json, format_ts
from console.audit.models import AuditEntry
from console.db import utcnow

log = logging.getLogger(__name__)

LOG_MARK = "AUDIT-CHECKPOINT"
FILE_PREFIX = "checkpoint-"


class CheckpointError(RuntimeError):
    """The database no longer matches a signed checkpoint, or none can be written."""


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    time: str
    statement: str
    signature: str
    path: Path | None = None

    def document(self) -> dict[str, str]:
        return {"statement": self.statement, "signature": self.signature}


def _fingerprint(key: Ed25519PrivateKey) -> str:
    from console.audit.export import fingerprint

    return fingerprint(key.public_key())


def sign_checkpoint(key: Ed25519PrivateKey, seq: int, digest: str, at: datetime) -> Checkpoint:
    statement = canonical_json(
        {
            "hash": digest,
            "key_sha256": _fingerprint(key),
            "kind": "audit-checkpoint",
            "seq": seq,
            "time": format_ts(at),
            "version": 1,
        }
    )
    signature = base64.b64encode(key.sign(statement.encode("utf-8"))).decode()
    return Checkpoint(seq, digest, format_ts(at), statement, signature)


def store_checkpoint(directory: Path, checkpoint: Checkpoint) -> Checkpoint:
    """Write the checkpoint file atomically and log the same document."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = checkpoint.time.replace("-", "").replace(":", "").replace(".", "")
    path = directory / f"{FILE_PREFIX}{checkpoint.seq:012d}-{stamp}.json"
    data = (json.dumps(checkpoint.document(), sort_keys=True) + "\n").encode()
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".checkpoint-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # The same document in the application log: a second copy outside the database.
    log.info("%s %s", LOG_MARK, json.dumps(checkpoint.document(), sort_keys=True))
    return Checkpoint(
        checkpoint.seq,
        checkpoint.hash,
        checkpoint.time,
        checkpoint.statement,
        checkpoint.signature,
        path,
    )


def read_checkpoints(directory: Path) -> list[Checkpoint]:
    """The checkpoints in a directory, oldest position first (unverified)."""
    found: list[Checkpoint] = []
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob(f"{FILE_PREFIX}*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            body = json.loads(doc["statement"])
            found.append(
                Checkpoint(
                    int(body["seq"]),
                    str(body["hash"]),
                    str(body["time"]),
                    doc["statement"],
                    doc["signature"],
                    path,
                )
            )
        except (OSError, ValueError, KeyError, TypeError):
            log.error("unreadable audit checkpoint file %s", path)
    found.sort(key=lambda c: (c.seq, c.time))
    return found


def _settings_key() -> tuple[Path, Ed25519PrivateKey]:
    from console.audit.export import load_signing_key

    settings = current_app.config["SETTINGS"]
    key = load_signing_key(settings, current_app.instance_path)
    return Path(settings.audit_checkpoint_dir), key


def write_checkpoint(
    s: Session,
    *,
    directory: Path | None = None,
    key: Ed25519PrivateKey | None = None,
) -> Checkpoint:
    """Sign and store a checkpoint of the newest committed entry (the hourly job).

    Raises CheckpointError when the newest checkpoint already stored no longer
    matches the database (rewritten or truncated history), or when the chain
    head and the last entry disagree; nothing is written then.
    """
    if directory is None or key is None:
        default_dir, default_key = _settings_key()
        directory = directory or default_dir
        key = key or default_key
    last = s.execute(
        select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    head = s.execute(text("SELECT last_seq, last_hash FROM audit_chain_head WHERE id = 1")).first()
    seq, digest = (int(last[0]), str(last[1])) if last else (0, "0" * 64)
    if head is not None and (int(head[0]), str(head[1])) != (seq, digest):
        s.rollback()
        raise CheckpointError(
            f"the chain head says seq {head[0]} but the last entry is seq {seq}: "
            "the log was changed outside the application"
        )
    previous = read_checkpoints(directory)
    if previous:
        newest = previous[-1]
        stored = s.scalar(select(AuditEntry.hash).where(AuditEntry.seq == newest.seq))
        purged = _purged_through(s)
        if newest.seq > seq:
            s.rollback()
            raise CheckpointError(
                f"truncated: the checkpoint of {newest.time} saw seq {newest.seq}, "
                f"the log now ends at seq {seq}"
            )
        if newest.seq > purged and newest.seq > 0 and stored != newest.hash:
            s.rollback()
            raise CheckpointError(
                f"rewritten: entry {newest.seq} no longer has the hash the checkpoint of "
                f"{newest.time} signed"
            )
    s.rollback()
    return store_checkpoint(directory, sign_checkpoint(key, seq, digest, utcnow()))


def _purged_through(s: Session) -> int:
    from console.audit.models import AuditCheckpoint

    value = s.scalar(
        select(AuditCheckpoint.purged_through_seq).order_by(AuditCheckpoint.id.desc()).limit(1)
    )
    return int(value or 0)


# ---------------------------------------------------------------- every N entries


def _after_commit(session: Session) -> None:
    appended: list[tuple[int, str]] | None = session.info.pop(PENDING_CHECKPOINTS, None)
    if not appended or not has_app_context():
        return
    settings = current_app.config["SETTINGS"]
    every = int(settings.audit_checkpoint_every or 0)
    due = [(seq, digest) for seq, digest in appended if every > 0 and seq % every == 0]
    if not due:
        return
    try:
        directory, key = _settings_key()
        from console.db import get_db

        with get_db().engine.connect() as conn:
            for seq, digest in due:
                # Only what is committed for everyone (a test's outer transaction is not).
                stored = conn.execute(
                    text("SELECT hash FROM audit_entries WHERE seq = :seq"), {"seq": seq}
                ).scalar()
                if stored == digest:
                    store_checkpoint(directory, sign_checkpoint(key, seq, digest, utcnow()))
    except Exception:
        log.exception("could not write the audit checkpoint after seq %s", due[-1][0])


def _after_rollback(session: Session) -> None:
    session.info.pop(PENDING_CHECKPOINTS, None)


event.listen(Session, "after_commit", _after_commit)
event.listen(Session, "after_rollback", _after_rollback)


def checkpoint_summary(c: Checkpoint) -> dict[str, Any]:
    return {"seq": c.seq, "hash": c.hash, "time": c.time, "path": str(c.path or "")}
