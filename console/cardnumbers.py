"""Primary account numbers (card numbers) in free text: found by shape and Luhn.

13 to 19 digits, optionally grouped by single spaces or dashes, whose Luhn
check digit is right. Used to refuse such text before it is stored, and to
mask it wherever it must be kept (logs, stored webhook bodies).
"""

from __future__ import annotations

import re

# Digits with optional single space/dash separators, not glued to other digits.
_CANDIDATE = re.compile(r"(?<![\d])(?:\d[ -]?){12,18}\d(?![\d])")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = ord(ch) - 48
        if i % 2 == 1:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def find_card_numbers(text: str) -> list[str]:
    """The substrings of `text` that look like card numbers (as written)."""
    found = []
    for match in _CANDIDATE.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            found.append(match.group())
    return found


def mask_card_numbers(text: str) -> str:
    """Replace every card number by its last four digits: `[card ****4242]`."""

    def mask(match: re.Match[str]) -> str:
        digits = re.sub(r"[ -]", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            return f"[card ****{digits[-4:]}]"
        return match.group()

    return _CANDIDATE.sub(mask, text)
