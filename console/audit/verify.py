"""Verify an audit export bundle offline.

    python -m console.audit.verify BUNDLE_DIR --public-key public_key.pem

Needs only the Python standard library and `cryptography`; this file can be
copied out of the repository and run on its own. It checks, in order:

1. the Ed25519 signature over `manifest.json` (exact bytes);
2. every entry: its hash over the canonical bytes as found in the file (no
   re-serializing), its sequence number and, for an unfiltered range, the
   chain (each `_prev_hash` is the previous entry's hash, seq grows by one,
   the first links to the manifest's `prev_hash`);
3. count and first/last sequence and hash against the manifest;
4. the SHA-256 of the data file (last, so a changed entry is named first).

Exit 0 with `valid: N entries, seq A..B`; exit 1 naming the first bad
sequence number and why; exit 2 when the bundle cannot be read at all.
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
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

LINE_PREFIX = '{"entry":'
HASH_SUFFIX_START = ',"hash":"'
SUFFIX_LEN = len(HASH_SUFFIX_START) + 64 + len('"}')
POSITION_PREFIX = '{"_prev_hash":"'
SEQ_MARK = '","_seq":'


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


def position(canonical: str) -> tuple[str, int]:
    """(`_prev_hash`, `_seq`) from the fixed start of a canonical entry."""
    if not canonical.startswith(POSITION_PREFIX) or canonical[79:88] != SEQ_MARK:
        raise ValueError("not a canonical audit entry")
    return canonical[15:79], int(canonical[88 : canonical.index(",", 88)])


def jsonl_entries(path: Path) -> Iterator[tuple[int, str, str]]:
    """(line number, canonical, claimed hash) per line, without parsing JSON."""
    with path.open("r", encoding="utf-8", newline="\n") as f:
        for number, raw in enumerate(f, start=1):
            line = raw.rstrip("\n")
            if not line:
                continue
            if not line.startswith(LINE_PREFIX) or line[-SUFFIX_LEN:][: len(HASH_SUFFIX_START)] != (
                HASH_SUFFIX_START
            ):
                raise Invalid(f"line {number} is not an audit export line")
            yield number, line[len(LINE_PREFIX) : -SUFFIX_LEN], line[-SUFFIX_LEN + 9 : -2]


def csv_entries(path: Path) -> Iterator[tuple[int, str, str]]:
    with path.open("r", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        for number, row in enumerate(reader, start=2):
            if "canonical" not in row or "hash" not in row:
                raise Invalid("the CSV has no canonical/hash columns")
            yield number, row["canonical"], row["hash"]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(bundle: Path, public_key_path: Path) -> tuple[int, int | None, int | None, bool]:
    """Verify a bundle; return (count, first seq, last seq, chain checked) or raise Invalid."""
    manifest_path = bundle / "manifest.json"
    signature_path = bundle / "manifest.sig"
    manifest_bytes = manifest_path.read_bytes()
    key = load_pem_public_key(public_key_path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise Invalid("the public key is not an Ed25519 key")
    try:
        key.verify(base64.b64decode(signature_path.read_bytes().strip()), manifest_bytes)
    except (InvalidSignature, ValueError) as exc:
        raise Invalid("bad signature: manifest.json was not signed by this key") from exc
    manifest = json.loads(manifest_bytes)
    data_path = bundle / manifest["data_file"]

    chain = bool(manifest.get("chain"))
    if chain and manifest.get("first_seq") == 1 and manifest.get("prev_hash") != "0" * 64:
        raise Invalid("the first entry of the log does not start from the genesis hash", 1)
    checkpoint = manifest.get("checkpoint") or None
    if (
        chain
        and checkpoint
        and manifest.get("first_seq") == checkpoint["purged_through_seq"] + 1
        and manifest.get("prev_hash") != checkpoint["purged_through_hash"]
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
    for number, canonical, claimed in entries:
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
        if previous_seq is not None and seq == previous_seq:
            raise Invalid(f"inserted: a second entry claims seq {seq}", seq)
        if previous_seq is not None and seq < previous_seq:
            raise Invalid(f"reordered: seq {seq} follows {previous_seq}", seq)
        if chain:
            if previous_seq is not None and seq != previous_seq + 1:
                gap, expected_seq = seq, previous_seq + 1
            elif prev_hash != expected_prev:
                raise Invalid(
                    "inserted or out of chain: its previous hash is not the hash of the entry "
                    "before it",
                    seq,
                )
        expected_prev = claimed
        if first_seq is None:
            first_seq = seq
        previous_seq = seq
        last_hash = claimed
        count += 1
    if gap is not None:
        raise Invalid(f"missing: entries {expected_seq}..{gap - 1} are gone", gap)
    if count != manifest["count"]:
        raise Invalid(f"count mismatch: {count} entries, the manifest says {manifest['count']}")
    if count and (first_seq != manifest["first_seq"] or previous_seq != manifest["last_seq"]):
        raise Invalid(
            f"range mismatch: seq {first_seq}..{previous_seq}, the manifest says "
            f"{manifest['first_seq']}..{manifest['last_seq']}"
        )
    if count and last_hash != manifest["last_hash"]:
        raise Invalid("the last entry's hash differs from the manifest", previous_seq)
    # Last, so that a changed entry is named by its sequence number above.
    if sha256_file(data_path) != manifest["data_sha256"]:
        raise Invalid(f"data file hash mismatch: {manifest['data_file']} was changed")
    return count, first_seq, previous_seq, chain


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify an audit export bundle offline.")
    parser.add_argument("bundle", type=Path, help="the bundle directory")
    parser.add_argument("--public-key", type=Path, required=True, help="Ed25519 public key (PEM)")
    args = parser.parse_args(argv)
    try:
        count, first, last, chain = verify(args.bundle, args.public_key)
    except Invalid as exc:
        where = f"seq {exc.seq}: " if exc.seq is not None else ""
        print(csv_cell(f"INVALID: {where}{exc.why}"))
        return 1
    except (OSError, KeyError, ValueError) as exc:
        # The bundle is someone else's data: no escape sequence reaches the terminal.
        print(csv_cell(f"cannot read the bundle: {exc}"), file=sys.stderr)
        return 2
    scope = "chain verified" if chain else "filtered export: each entry's hash verified, no chain"
    checkpoint = json.loads((args.bundle / "manifest.json").read_bytes()).get("checkpoint")
    if chain and checkpoint and first == checkpoint["purged_through_seq"] + 1:
        scope += f"; follows the purge checkpoint through seq {checkpoint['purged_through_seq']}"
    span = f"seq {first}..{last}" if count else "no entries"
    print(f"valid: {count} entries, {span} ({scope})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
