"""Verify an audit export bundle offline, against a key you hold.

    python3 verify_bundle.py BUNDLE_DIR --fingerprint SHA256 [--checkpoints DIR]
    python3 verify_bundle.py BUNDLE_DIR --public-key KEY.pem [--checkpoints DIR]

One file: it needs only Python 3.11+ and the `cryptography` package, and runs
from any directory (download it from the console's export page, or copy
`console/audit/verify.py`). Trust comes from what you pin, never from the
bundle alone: pass the signing key's fingerprint (shown on the export page,
recorded by whoever set up the key) or a public key file you keep; the
`public_key.pem` inside the bundle is used only when its fingerprint is the
one you pinned.

It checks, in order:

1. the Ed25519 signature over `manifest.json` (exact bytes);
2. every entry: its hash over the canonical bytes as found in the file (no
   re-serializing), its sequence number and, for an unfiltered range, the
   chain (each `_prev_hash` is the previous entry's hash, seq grows by one,
   the first links to the manifest's `prev_hash`, an unfiltered log starts at
   seq 1 or right after the purge checkpoint); in a CSV, every display column
   against the canonical form it came from;
3. count and first/last sequence and hash against the manifest, so a deleted
   last line is named by its sequence number;
4. the signed checkpoints given with `--checkpoints` (files or directories of
   `checkpoint-*.json`, or application logs with `AUDIT-CHECKPOINT` lines):
   an entry that differs from a checkpoint, or entries missing after a
   checkpointed seq that the export should contain, are named by number;
5. the SHA-256 of the data file (last, so a changed entry is named first).

Exit 0 with `valid: N entries, seq A..B`; exit 1 naming the first bad
sequence number and why; exit 2 when the bundle cannot be read or no key is
pinned.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

LINE_PREFIX = '{"entry":'
HASH_SUFFIX_START = ',"hash":"'
SUFFIX_LEN = len(HASH_SUFFIX_START) + 64 + len('"}')
POSITION_PREFIX = '{"_prev_hash":"'
SEQ_MARK = '","_seq":'
GENESIS = "0" * 64
CHECKPOINT_MARK = "AUDIT-CHECKPOINT"
# CSV cells a spreadsheet would run as a formula are exported with a leading quote.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# Spreadsheet safety (OWASP CSV injection): a display cell starting with one of
# these is read as a formula by Excel, LibreOffice and Google Sheets.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_NAMES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def csv_cell(value: object) -> str:
    """How a display value is written to an export CSV cell (and compared with it).

    Control characters (newlines, tabs, ANSI escape sequences, C1 controls)
    become visible escapes such as `\\n` or `\\x1b`, and a cell that would
    start a formula gets a leading `'`. The `canonical` column is never
    passed through here: it is the exact bytes that were hashed, and
    canonical JSON escapes every control character itself.
    """
    if value is None:
        return ""
    text = _CONTROL.sub(lambda m: _CONTROL_NAMES.get(m[0], f"\\x{ord(m[0]):02x}"), str(value))
    if text.startswith(FORMULA_START):
        text = "'" + text
    return text


class Invalid(Exception):
    """The bundle does not verify; `seq` is the first bad entry, if any."""

    def __init__(self, why: str, seq: int | None = None) -> None:
        super().__init__(why)
        self.why = why
        self.seq = seq


class Untrusted(Exception):
    """No key the auditor holds was given: nothing can be verified."""


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    time: str
    source: str


@dataclass(frozen=True)
class Result:
    """What verified: entries, their range, whether the chain was checked, checkpoints."""

    count: int
    first: int | None
    last: int | None
    chain: bool
    checkpoints: int = 0
    checkpoints_covered: int = 0


def position(canonical: str) -> tuple[str, int]:
    """(`_prev_hash`, `_seq`) from the fixed start of a canonical entry."""
    if not canonical.startswith(POSITION_PREFIX) or canonical[79:88] != SEQ_MARK:
        raise ValueError("not a canonical audit entry")
    return canonical[15:79], int(canonical[88 : canonical.index(",", 88)])


def fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw public key, as the export page shows it."""
    return hashlib.sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()


def load_key(path: Path) -> Ed25519PublicKey:
    key = load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise Invalid("the public key is not an Ed25519 key")
    return key


def pinned_key(bundle: Path, public_key: Path | None, pin: str | None) -> Ed25519PublicKey:
    """The key to trust: a file the auditor holds, or the bundle's own only when pinned."""
    pin = (pin or "").strip().lower().replace(":", "") or None
    if public_key is None:
        if pin is None:
            raise Untrusted("pass --fingerprint (the signing key's SHA-256) or --public-key FILE")
        public_key = bundle / "public_key.pem"
    inside = public_key.resolve().parent == bundle.resolve()
    if inside and pin is None:
        raise Untrusted(
            f"{public_key} came with the bundle, so it proves nothing on its own: pass "
            "--fingerprint with the fingerprint you hold, or --public-key with a key file "
            "kept apart from the exports"
        )
    key = load_key(public_key)
    if pin is not None and fingerprint(key) != pin:
        raise Invalid(f"the key's fingerprint is {fingerprint(key)}, not the pinned {pin}")
    return key


def jsonl_entries(path: Path) -> Iterator[tuple[int, str, str, dict[str, str] | None]]:
    """(line number, canonical, claimed hash, no display columns) per line."""
    with path.open("r", encoding="utf-8", newline="\n") as f:
        for number, raw in enumerate(f, start=1):
            line = raw.rstrip("\n")
            if not line:
                continue
            if not line.startswith(LINE_PREFIX) or line[-SUFFIX_LEN:][: len(HASH_SUFFIX_START)] != (
                HASH_SUFFIX_START
            ):
                raise Invalid(f"line {number} is not an audit export line")
            yield number, line[len(LINE_PREFIX) : -SUFFIX_LEN], line[-SUFFIX_LEN + 9 : -2], None


def csv_entries(path: Path) -> Iterator[tuple[int, str, str, dict[str, str] | None]]:
    with path.open("r", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        for number, row in enumerate(reader, start=2):
            if "canonical" not in row or "hash" not in row:
                raise Invalid("the CSV has no canonical/hash columns")
            yield number, row["canonical"], row["hash"], row


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _displayed(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _same_cell(cell: str, value: Any) -> bool:
    """The cell is the hashed value as an export writes it (`csv_cell`): made safe for
    spreadsheets and terminals, nothing else changed."""
    return cell == csv_cell(_displayed(value)) or cell == _displayed(value)


def display_problem(row: dict[str, str], canonical: str) -> str | None:
    """The first CSV column that is not what the canonical form holds, if any."""
    try:
        body = json.loads(canonical)
    except ValueError:
        return "its canonical form is not JSON"
    actor = body.get("actor") or {}
    target = body.get("target") or {}
    expected = {
        "seq": str(body.get("_seq")),
        "prev_hash": body.get("_prev_hash"),
        "ts": body.get("ts"),
        "actor_sub": actor.get("sub"),
        "actor_email": actor.get("email"),
        "action": body.get("action"),
        "target_type": target.get("type"),
        "target_id": target.get("id"),
        "outcome": body.get("outcome"),
        "reason": body.get("reason"),
        "ticket": body.get("ticket"),
    }
    for column, value in expected.items():
        if column in row and not _same_cell(row[column] or "", value):
            return f"the {column} column differs from what was hashed"
    return None


def _parse_time(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _checkpoint_documents(source: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    if source.is_dir():
        for path in sorted(source.glob("checkpoint-*.json")):
            yield path.name, json.loads(path.read_text(encoding="utf-8"))
        return
    text = source.read_text(encoding="utf-8", errors="replace")
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        yield source.name, doc
        return
    for number, line in enumerate(text.splitlines(), start=1):
        mark = line.find(CHECKPOINT_MARK + " ")
        if mark >= 0:
            yield f"{source.name}:{number}", json.loads(line[mark + len(CHECKPOINT_MARK) + 1 :])


def load_checkpoints(sources: list[Path], key: Ed25519PublicKey) -> list[Checkpoint]:
    """Every checkpoint in the sources, each signature checked against the pinned key."""
    found: dict[tuple[int, str, str], Checkpoint] = {}
    for source in sources:
        for name, doc in _checkpoint_documents(source):
            try:
                statement = doc["statement"]
                key.verify(base64.b64decode(doc["signature"]), statement.encode("utf-8"))
                body = json.loads(statement)
                checkpoint = Checkpoint(
                    int(body["seq"]), str(body["hash"]), str(body["time"]), name
                )
            except InvalidSignature as exc:
                raise Invalid(f"checkpoint {name} is not signed by the pinned key") from exc
            except (KeyError, TypeError, ValueError) as exc:
                raise Invalid(f"checkpoint {name} is not a checkpoint document") from exc
            if body.get("kind") != "audit-checkpoint":
                raise Invalid(f"checkpoint {name} is not an audit checkpoint")
            found[(checkpoint.seq, checkpoint.hash, checkpoint.time)] = checkpoint
    return sorted(found.values(), key=lambda c: (c.seq, c.time))


def verify(
    bundle: Path,
    public_key_path: Path | None = None,
    *,
    fingerprint: str | None = None,
    checkpoints: list[Path] | None = None,
) -> Result:
    """Verify a bundle; return what was verified or raise Invalid (or Untrusted)."""
    manifest_path = bundle / "manifest.json"
    signature_path = bundle / "manifest.sig"
    manifest_bytes = manifest_path.read_bytes()
    key = pinned_key(bundle, public_key_path, fingerprint)
    try:
        key.verify(base64.b64decode(signature_path.read_bytes().strip()), manifest_bytes)
    except (InvalidSignature, ValueError) as exc:
        raise Invalid("bad signature: manifest.json was not signed by this key") from exc
    manifest = json.loads(manifest_bytes)
    data_path = bundle / manifest["data_file"]
    signed = load_checkpoints(list(checkpoints or []), key)
    watched = {c.seq for c in signed}
    seen: dict[int, str] = {}

    filters = manifest.get("filters") or {}
    chain = bool(manifest.get("chain"))
    purge = manifest.get("checkpoint") or None
    purged_through = int(purge["purged_through_seq"]) if purge else 0
    if chain and manifest.get("first_seq") == 1 and manifest.get("prev_hash") != GENESIS:
        raise Invalid("the first entry of the log does not start from the genesis hash", 1)
    if (
        chain
        and purge
        and manifest.get("first_seq") == purged_through + 1
        and manifest.get("prev_hash") != purge["purged_through_hash"]
    ):
        raise Invalid(
            "the first entry does not follow the purge checkpoint's last hash",
            manifest["first_seq"],
        )
    entries = csv_entries(data_path) if manifest["format"] == "csv" else jsonl_entries(data_path)
    expected_prev = manifest.get("prev_hash")
    previous_seq: int | None = None
    first_seq: int | None = None
    last_hash: str | None = None
    gap: int | None = None  # seq of an entry that skipped ahead: missing or reordered?
    expected_seq = 0
    count = 0
    sha256 = hashlib.sha256
    for number, canonical, claimed, row in entries:
        try:
            prev_hash, seq = position(canonical)
        except ValueError as exc:
            after = f" (after seq {previous_seq})" if previous_seq is not None else ""
            raise Invalid(f"line {number}{after} is not a canonical audit entry", gap) from exc
        if gap is not None:
            # The entry after a jump tells a moved entry from a removed one.
            if seq < gap:
                raise Invalid(f"reordered: seq {gap} comes before seq {seq}", gap)
            raise Invalid(f"missing: entries {expected_seq}..{gap - 1} are gone", gap)
        if sha256(canonical.encode("utf-8")).hexdigest() != claimed:
            raise Invalid("edited: the entry's hash does not match its content", seq)
        if row is not None:
            problem = display_problem(row, canonical)
            if problem:
                raise Invalid(f"edited: {problem}", seq)
        if previous_seq is not None and seq == previous_seq:
            raise Invalid(f"inserted: a second entry claims seq {seq}", seq)
        if previous_seq is not None and seq < previous_seq:
            raise Invalid(f"reordered: seq {seq} follows {previous_seq}", seq)
        if chain:
            start = manifest.get("first_seq")
            if previous_seq is None and start is not None and seq > start:
                raise Invalid(
                    f"missing: entries {start}..{seq - 1} are gone from the start of the file",
                    start,
                )
            if previous_seq is not None and seq != previous_seq + 1:
                gap, expected_seq = seq, previous_seq + 1
            elif prev_hash != expected_prev:
                raise Invalid(
                    "inserted or out of chain: its previous hash is not the hash of the entry "
                    "before it",
                    seq,
                )
        if seq in watched:
            seen[seq] = claimed
        expected_prev = claimed
        if first_seq is None:
            first_seq = seq
        previous_seq = seq
        last_hash = claimed
        count += 1
    if gap is not None:
        raise Invalid(f"missing: entries {expected_seq}..{gap - 1} are gone", gap)
    manifest_last = manifest.get("last_seq")
    if count < manifest["count"] and (previous_seq is None or previous_seq < manifest_last):
        # The end of the file is gone: name what the signed manifest says was there.
        if chain:
            start = manifest["first_seq"] if previous_seq is None else previous_seq + 1
        else:
            start = manifest_last
        span = (
            f"entries {start}..{manifest_last} are"
            if start != manifest_last
            else (f"entry {manifest_last} is")
        )
        raise Invalid(f"missing: {span} gone from the end of the file", start)
    if count != manifest["count"]:
        raise Invalid(f"count mismatch: {count} entries, the manifest says {manifest['count']}")
    if count and (first_seq != manifest["first_seq"] or previous_seq != manifest_last):
        raise Invalid(
            f"range mismatch: seq {first_seq}..{previous_seq}, the manifest says "
            f"{manifest['first_seq']}..{manifest_last}"
        )
    if count and last_hash != manifest["last_hash"]:
        raise Invalid("the last entry's hash differs from the manifest", previous_seq)
    unfiltered = chain and not filters.get("since")
    if unfiltered and first_seq is not None and first_seq > purged_through + 1:
        raise Invalid(
            f"missing: entries {purged_through + 1}..{first_seq - 1} are gone from the start "
            "(no purge checkpoint covers them)",
            purged_through + 1,
        )
    covered = _check_against(
        signed, seen=seen, manifest=manifest, chain=chain, first=first_seq, last=previous_seq
    )
    # Last, so that a changed entry is named by its sequence number above.
    if sha256_file(data_path) != manifest["data_sha256"]:
        raise Invalid(f"data file hash mismatch: {manifest['data_file']} was changed")
    return Result(count, first_seq, previous_seq, chain, len(signed), covered)


def _check_against(
    signed: list[Checkpoint],
    *,
    seen: dict[int, str],
    manifest: dict[str, Any],
    chain: bool,
    first: int | None,
    last: int | None,
) -> int:
    """Compare the bundle with the signed checkpoints; return how many applied."""
    filters = manifest.get("filters") or {}
    exported_at = _parse_time(manifest.get("exported_at"))
    since, until = _parse_time(filters.get("since")), _parse_time(filters.get("until"))
    covered = 0
    for c in signed:
        if c.seq in seen:
            covered += 1
            if seen[c.seq] != c.hash:
                raise Invalid(
                    f"rewritten: entry {c.seq} differs from the signed checkpoint of {c.time} "
                    f"({c.source}); history was changed after it",
                    c.seq,
                )
            continue
        if not chain or c.seq == 0:
            continue  # a filtered export need not contain the checkpointed entry
        at = _parse_time(c.time)
        if at is None or (exported_at is not None and at > exported_at):
            continue  # written after this export was made
        if until is not None and at >= until:
            continue  # the checkpoint may lie after the exported range
        if since is not None and first is None:
            continue
        if last is None or c.seq > last:
            start = 1 if last is None else last + 1
            covered += 1
            raise Invalid(
                f"truncated: entries {start}..{c.seq} are missing; the signed checkpoint of "
                f"{c.time} ({c.source}) saw the log run through seq {c.seq}",
                start,
            )
    return covered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Verify an audit export bundle offline, against a key you hold."
    )
    parser.add_argument("bundle", type=Path, help="the bundle directory (unpacked)")
    parser.add_argument(
        "--public-key", type=Path, help="Ed25519 public key (PEM) kept apart from the exports"
    )
    parser.add_argument(
        "--fingerprint", help="SHA-256 of the signing key (as the export page shows it)"
    )
    parser.add_argument(
        "--checkpoints",
        type=Path,
        action="append",
        default=[],
        metavar="DIR_OR_FILE",
        help="signed checkpoints: a directory, a checkpoint file or an application log",
    )
    args = parser.parse_args(argv)
    try:
        result = verify(
            args.bundle,
            args.public_key,
            fingerprint=args.fingerprint,
            checkpoints=args.checkpoints,
        )
    except Untrusted as exc:
        print(f"refusing to verify: {exc}", file=sys.stderr)
        return 2
    except Invalid as exc:
        where = f"seq {exc.seq}: " if exc.seq is not None else ""
        print(csv_cell(f"INVALID: {where}{exc.why}"))
        return 1
    except (OSError, KeyError, ValueError) as exc:
        # The bundle is someone else's data: no escape sequence reaches the terminal.
        print(csv_cell(f"cannot read the bundle: {exc}"), file=sys.stderr)
        return 2
    count, first, last, chain = result.count, result.first, result.last, result.chain
    scope = "chain verified" if chain else "filtered export: each entry's hash verified, no chain"
    purge = json.loads((args.bundle / "manifest.json").read_bytes()).get("checkpoint")
    if chain and purge and first == purge["purged_through_seq"] + 1:
        scope += f"; follows the purge checkpoint through seq {purge['purged_through_seq']}"
    if args.checkpoints:
        scope += (
            f"; {result.checkpoints} signed checkpoints, {result.checkpoints_covered} within "
            "this export"
        )
    span = f"seq {first}..{last}" if count else "no entries"
    print(f"valid: {count} entries, {span} ({scope})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
