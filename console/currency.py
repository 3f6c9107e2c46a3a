"""Currencies: how many decimals each has, as Stripe defines them, in one place.

Money is stored as integer minor units with a currency. The exponent decides
how a person types and reads an amount: JPY has no decimals (1200 JPY is
1200 minor units), EUR two (12.50 EUR is 1250), KWD three (1.234 KWD is
1234). Parsing never rounds: an amount with more decimals than its currency
has, a non-finite value or a negative one is refused with a message.
Source: Stripe's "zero-decimal" and "three-decimal" currency lists.
"""

from __future__ import annotations

import re
from decimal import Decimal

ZERO_DECIMAL = frozenset(
    {
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    }
)
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
# Minor units the database and Stripe take (PostgreSQL INTEGER; Stripe allows 8 digits).
MAX_MINOR = 2**31 - 1
_AMOUNT = re.compile(r"(?P<whole>[0-9]+)(?:\.(?P<frac>[0-9]*))?")


class AmountError(ValueError):
    """An amount a person typed that cannot be taken as given; the message says why."""


def exponent(currency: str | None) -> int:
    """Decimals of the currency's major unit: 0 (JPY), 2 (EUR, the default), 3 (KWD)."""
    code = (currency or "").upper()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def parse_amount(text: str | None, currency: str | None) -> int:
    """Typed major units -> integer minor units, exactly; AmountError otherwise."""
    code = (currency or "").upper() or "the currency"
    raw = (text or "").strip().replace(" ", "")
    if not raw:
        raise AmountError("Enter an amount.")
    places = exponent(currency)
    example = {0: "1200", 2: "12.50", 3: "1.250"}[places]
    match = _AMOUNT.fullmatch(raw)
    if match is None:
        if raw.startswith("-"):
            raise AmountError("The amount must be positive.")
        if "," in raw:
            raise AmountError(
                f"Write the amount with a point for decimals and no thousands separator, "
                f"e.g. {example}."
            )
        raise AmountError(f"'{raw[:40]}' is not an amount; write it like {example}.")
    frac = match["frac"] or ""
    if len(frac) > places:
        has = "no decimals" if places == 0 else f"{places} decimals"
        raise AmountError(
            f"{code} has {has}: '{raw[:40]}' has {len(frac)}. Nothing is rounded; "
            f"write it like {example}."
        )
    minor = int(match["whole"] + frac.ljust(places, "0")) if places else int(match["whole"])
    if minor > MAX_MINOR:
        raise AmountError(f"'{raw[:40]}' is larger than any amount this console moves.")
    return minor


def major(amount: int, currency: str | None) -> Decimal:
    """Minor units -> major units, exactly (for prefilling a form)."""
    return Decimal(amount).scaleb(-exponent(currency))


def format_major(amount: int, currency: str | None) -> str:
    """Minor units as a person types them, without the code: '12.50', '1200', '1.234'."""
    places = exponent(currency)
    sign = "-" if amount < 0 else ""
    whole, minor_part = divmod(abs(amount), 10**places)
    return f"{sign}{whole}.{minor_part:0{places}d}" if places else f"{sign}{whole}"


def format_money(amount: int | None, currency: str | None) -> str:
    """Minor units for reading: 4200 EUR -> '42.00 EUR', 1200 JPY -> '1,200 JPY'."""
    if amount is None:
        return "—"
    code = (currency or "").upper()
    places = exponent(code)
    sign = "-" if amount < 0 else ""
    whole, minor_part = divmod(abs(amount), 10**places)
    text = f"{whole:,}.{minor_part:0{places}d}" if places else f"{whole:,}"
    return f"{sign}{text} {code}".rstrip()
