"""Signed audit export bundles, streamed in constant memory.

A bundle is a directory: the data file (`audit.jsonl` or `audit.csv`),
`manifest.json`, `manifest.sig` (Ed25519 over the manifest's exact bytes,
base64) and `public_key.pem`. Entries are streamed from the stored canonical
bytes and hashes (no ORM objects, no re-serializing), so an export runs at
close to the database's copy speed. `console.audit.verify` checks a bundle.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import logging
import os
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)
from sqlalchemy import Select, literal, select
from sqlalchemy.orm import Session

from console.audit.chain import GENESIS_HASH, format_ts, parse_canonical_position
from console.audit.models import AuditCheckpoint, AuditEntry
from console.audit.verify import csv_cell
from console.config import Settings
from console.db import utcnow

log = logging.getLogger(__name__)

FORMATS = ("jsonl", "csv")
CSV_COLUMNS = [
    "seq",
    "ts",
    "actor_sub",
    "actor_email",
    "action",
    "target_type",
    "target_id",
    "outcome",
    "reason",
    "ticket",
    "prev_hash",
    "hash",
    "canonical",
]
CHUNK = 10_000
_HEAD = 160  # bytes of a line that hold its chain position


class ExportError(RuntimeError):
    """The export cannot run; the message says why."""


def load_signing_key(settings: Settings, instance_path: str) -> Ed25519PrivateKey:
    """The key from AUDIT_SIGNING_KEY; in demo/test one is generated once if unset."""
    path = settings.audit_signing_key
    if not path:
        if settings.is_production:
            raise ExportError("AUDIT_SIGNING_KEY is not set: exports must be signed in production")
        generated = Path(instance_path) / "audit_signing_key.pem"
        if not generated.exists():
            generated.parent.mkdir(parents=True, exist_ok=True)
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
            fd = os.open(generated, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
            log.warning(
                "AUDIT_SIGNING_KEY is not set: generated a demo audit signing key in %s", generated
            )
        path = str(generated)
    loaded = load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ExportError(f"{path} is not an Ed25519 private key")
    return loaded


def demo_key_note(settings: Settings, instance_path: str) -> str | None:
    """Say so when exports are signed with the generated demo key."""
    if settings.audit_signing_key or settings.is_production:
        return None
    path = Path(instance_path) / "audit_signing_key.pem"
    return (
        f"AUDIT_SIGNING_KEY is not set: exports are signed with a demo key generated once "
        f"in {path}. Set AUDIT_SIGNING_KEY to a PEM file in production."
    )


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def fingerprint(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


@dataclass
class Bundle:
    directory: Path
    manifest: dict[str, Any]


def _rows(s: Session, stmt: Select[Any], fmt: str) -> Iterator[Any]:
    """Stream the selection in sequence order, a chunk at a time."""
    entry = AuditEntry
    if fmt == "jsonl":
        columns: tuple[Any, ...] = (entry.seq, entry.canonical, entry.hash)
    else:
        columns = (
            entry.seq,
            entry.ts,
            entry.actor_sub,
            entry.actor_email,
            entry.action,
            entry.target_type,
            entry.target_id,
            entry.outcome,
            entry.reason,
            entry.ticket,
            entry.prev_hash,
            entry.hash,
            entry.canonical,
        )
    where = stmt.whereclause
    query = select(*columns).order_by(entry.seq)
    if where is not None:
        query = query.where(where)
    result = s.execute(query.execution_options(yield_per=CHUNK, stream_results=True))
    yield from result


def write_bundle(
    s: Session,
    stmt: Select[Any],
    *,
    out_dir: Path,
    fmt: str,
    filters: dict[str, str],
    exporter: dict[str, Any],
    key: Ed25519PrivateKey,
) -> Bundle:
    """Write a signed bundle for the selection `stmt` into `out_dir`."""
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    data_name = f"audit.{fmt}"
    digest = hashlib.sha256()
    count = 0
    first_seq = last_seq = None
    first_prev = last_hash = None
    with (out_dir / data_name).open("wb") as raw:
        if fmt == "jsonl":
            count, first_line, last_line = _copy_jsonl(s, stmt, raw, digest)
            if count:
                first_seq, first_prev = _line_position(first_line)
                last_seq, _ = _line_position(last_line)
                last_hash = last_line[-66:-2]
        else:
            text = io.StringIO()
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow(CSV_COLUMNS)
            for row in _rows(s, stmt, fmt):
                values = list(row)
                values[1] = format_ts(values[1])
                if first_seq is None:
                    first_seq, first_prev = values[0], values[10]
                # Display columns are spreadsheet-safe; the hashes and the canonical
                # bytes (the last three) are written exactly as stored.
                writer.writerow([csv_cell(v) for v in values[:10]] + values[10:])
                last_seq, last_hash = values[0], values[11]
                count += 1
                if count % CHUNK == 0:
                    _flush_text(raw, digest, text)
            _flush_text(raw, digest, text)
    range_only = set(filters) <= {"since", "until"}
    checkpoint = s.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()))
    public = key.public_key()
    manifest: dict[str, Any] = {
        "version": 1,
        "format": fmt,
        "data_file": data_name,
        "data_sha256": digest.hexdigest(),
        "filters": filters,
        "unfiltered": not filters,
        "contiguous": range_only,
        "chain": range_only,
        "count": count,
        "first_seq": first_seq,
        "last_seq": last_seq,
        "prev_hash": first_prev,
        "last_hash": last_hash,
        "exported_by": exporter,
        "exported_at": format_ts(utcnow()),
        "public_key_sha256": fingerprint(public),
        "genesis_hash": GENESIS_HASH,
        "checkpoint": {
            "purged_through_seq": checkpoint.purged_through_seq,
            "purged_through_hash": checkpoint.purged_through_hash,
            "purged_count": checkpoint.purged_count,
            "statement": checkpoint.statement,
            "signature": checkpoint.signature,
        }
        if checkpoint
        else None,
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True, indent=2).encode() + b"\n"
    (out_dir / "manifest.json").write_bytes(manifest_bytes)
    (out_dir / "manifest.sig").write_bytes(base64.b64encode(key.sign(manifest_bytes)) + b"\n")
    (out_dir / "public_key.pem").write_bytes(public_pem(public))
    return Bundle(out_dir, manifest)


def _line_position(line: str) -> tuple[int, str]:
    prev_hash, seq = parse_canonical_position(line[len('{"entry":') :])
    return seq, prev_hash


def _copy_jsonl(s: Session, stmt: Select[Any], raw: BinaryIO, digest: Any) -> tuple[int, str, str]:
    """Stream export lines with COPY, built in SQL from the stored bytes.

    CSV mode with a delimiter and quote character that canonical JSON can
    never contain (it escapes every control character) writes each line
    verbatim: no quoting, no backslash escaping. Returns (count, the start
    of the first line, the start of the last line followed by its last 80
    bytes): enough for the chain positions and the last hash, whatever the
    length of a line.
    """
    line = (
        literal('{"entry":')
        + AuditEntry.canonical
        + literal(',"hash":"')
        + AuditEntry.hash
        + literal('"}')
    )
    query = select(line).order_by(AuditEntry.seq)
    if stmt.whereclause is not None:
        query = query.where(stmt.whereclause)
    compiled = query.compile(dialect=s.get_bind().dialect)
    sql = f"COPY ({compiled}) TO STDOUT WITH (FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x01')"
    driver = s.connection().connection.driver_connection
    if driver is None:
        raise ExportError("no database connection for the export")
    cursor = driver.cursor()
    count = 0
    head = b""  # the start of the line being received
    first_head: bytes | None = None
    last_head = b""
    tail = b""
    with cursor.copy(sql, compiled.params) as copy:
        for block in copy:
            data = bytes(block)
            if not data:
                continue
            digest.update(data)
            raw.write(data)
            start = 0
            while True:
                nl = data.find(b"\n", start)
                if nl < 0:
                    if len(head) < _HEAD:
                        head += data[start : start + _HEAD]
                    break
                if len(head) < _HEAD:
                    head += data[start : min(nl, start + _HEAD)]
                count += 1
                if first_head is None:
                    first_head = head
                last_head = head
                head = b""
                start = nl + 1
            tail = data[-80:] if len(data) >= 80 else (tail + data)[-80:]
    if not count:
        return 0, "", ""
    first_line = (first_head or b"").decode("utf-8", "replace")
    last_line = (last_head + b"..." + tail.rstrip(b"\n")).decode("utf-8", "replace")
    return count, first_line, last_line


def _flush(raw: BinaryIO, digest: Any, buffer: list[str]) -> None:
    if not buffer:
        return
    data = ("\n".join(buffer) + "\n").encode("utf-8")
    digest.update(data)
    raw.write(data)
    buffer.clear()


def _flush_text(raw: BinaryIO, digest: Any, text: io.StringIO) -> None:
    data = text.getvalue().encode("utf-8")
    if data:
        digest.update(data)
        raw.write(data)
    text.seek(0)
    text.truncate()


def archive(bundle: Bundle) -> Path:
    """A single .tar.gz of the bundle in a temporary file (streamed from disk)."""
    fd, name = tempfile.mkstemp(prefix="audit-export-", suffix=".tar.gz")
    os.close(fd)
    with tarfile.open(name, "w:gz") as tar:
        for path in sorted(bundle.directory.iterdir()):
            tar.add(path, arcname=f"audit-export/{path.name}")
    return Path(name)


def sign_statement(key: Ed25519PrivateKey, statement: str) -> str:
    return base64.b64encode(key.sign(statement.encode())).decode()
