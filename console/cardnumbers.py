"""Primary account numbers (card numbers) in free text: find them, mask them.

A PAN here is 13 to 19 digits passing the Luhn check, written plain or in
groups separated by spaces or dashes ("4111 1111 1111 1111",
"4111-1111-1111-1111"). Text that holds one must never be stored: the
action framework refuses it, the webhook intake masks it, and the audit
chain masks whatever reaches it (it can never forget what it hashed).

Stdlib only: the audit chain and the webhook intake both use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

MIN_DIGITS = 13
MAX_DIGITS = 19
MASK = "*"
# A run of digit groups joined by spaces or dashes (up to 3), not touching other digits.
_RUN = re.compile(r"(?<![0-9])[0-9]+(?:[ -]{1,3}[0-9]+)*(?![0-9])")
_GROUP = re.compile(r"[0-9]+")


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check over a string of digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# 13 digits with at most 3 separators between neighbours: what every candidate
# holds. One search in C rules out the texts without any (most of them).
_LONG_ENOUGH = re.compile(r"[0-9](?:[ -]{0,3}[0-9]){12}")


HASH_LENGTH = 32
_HEX = frozenset("0123456789abcdefABCDEF")


def _inside_a_hash(text: str, start: int, end: int) -> bool:
    """Whether the digits text[start:end] are part of a hex token of HASH_LENGTH or more
    characters with a letter in it: a SHA-256, a UUID without dashes, a key fingerprint.

    About one SHA-256 in a hundred holds 13+ digits in a row that pass Luhn; masking
    them mangled the hash an audit checkpoint's log line carries (and refused a reason
    that quoted one). A card number glued to a word ("card4111...") is still one.
    """
    left, right = start, end
    while left > 0 and text[left - 1] in _HEX:
        left -= 1
    while right < len(text) and text[right] in _HEX:
        right += 1
    token = text[left:right]
    return len(token) >= HASH_LENGTH and not token.isdigit()


def _candidates(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of every PAN in `text`: whole groups of a run, 13-19 digits, Luhn-valid,
    not inside a hex hash."""
    if not _LONG_ENOUGH.search(text):
        return
    for run in _RUN.finditer(text):
        if run[0].isdigit() and _inside_a_hash(text, run.start(), run.end()):
            continue
        groups = [(m.start() + run.start(), m.end() + run.start()) for m in _GROUP.finditer(run[0])]
        i = 0
        while i < len(groups):
            found = None
            digits = ""
            for j in range(i, len(groups)):
                digits += text[groups[j][0] : groups[j][1]]
                if len(digits) > MAX_DIGITS:
                    break
                if len(digits) >= MIN_DIGITS and luhn_ok(digits):
                    found = j  # the longest Luhn-valid span from group i
            if found is not None:
                yield groups[i][0], groups[found][1]
                i = found + 1
            else:
                i += 1


def contains_pan(text: str | None) -> bool:
    """Whether `text` holds something that looks like a card number."""
    if not text:
        return False
    return next(_candidates(text), None) is not None


def mask_pans(text: str) -> str:
    """Replace every digit of each PAN but the last four with `*`, keeping separators."""
    spans = list(_candidates(text))
    if not spans:
        return text
    out: list[str] = []
    last = 0
    for start, end in spans:
        out.append(text[last:start])
        chunk = text[start:end]
        total = sum(ch.isdigit() for ch in chunk)
        seen = 0
        for ch in chunk:
            if ch.isdigit():
                seen += 1
                out.append(ch if seen > total - 4 else MASK)
            else:
                out.append(ch)
        last = end
    out.append(text[last:])
    return "".join(out)


def mask_in(value: Any) -> tuple[Any, bool]:
    """Mask PANs in the strings, keys and integers of a JSON value; say whether any was."""
    if isinstance(value, str):
        masked = mask_pans(value)
        return masked, masked != value
    if isinstance(value, bool):
        return value, False
    if isinstance(value, int):
        as_text = str(value)
        if contains_pan(as_text):
            return mask_pans(as_text), True
        return value, False
    if isinstance(value, list):
        changed = False
        items = []
        for item in value:
            new, hit = mask_in(item)
            items.append(new)
            changed = changed or hit
        return items, changed
    if isinstance(value, dict):
        changed = False
        out: dict[str, Any] = {}
        for key, item in value.items():
            new_key, key_hit = mask_in(key)
            new, hit = mask_in(item)
            out[str(new_key)] = new
            changed = changed or hit or key_hit
        return out, changed
    return value, False
