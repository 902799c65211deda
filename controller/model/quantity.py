"""Kubernetes resource quantities ("500m", "2", "512Mi", "8Gi", "1e3") as exact integers.

Placement arithmetic runs on integers (millicores, bytes) so capacity checks never suffer
float rounding; parsing follows the Kubernetes grammar for the suffixes users write.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
}
_QUANTITY = re.compile(r"^([+]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?)$")


class QuantityError(ValueError):
    """Not a Kubernetes quantity; the message says what is expected."""


def parse_quantity(value: str | int | float) -> Decimal:
    if isinstance(value, bool):
        raise QuantityError("a quantity such as 500m, 2, 512Mi or 8Gi")
    if isinstance(value, int | float):
        if value < 0:
            raise QuantityError("a non-negative quantity")
        return Decimal(str(value))
    match = _QUANTITY.match(value.strip())
    if match is None:
        raise QuantityError("a quantity such as 500m, 2, 512Mi or 8Gi")
    number, suffix = match.groups()
    try:
        base = Decimal(number)
    except InvalidOperation as exc:
        raise QuantityError("a quantity such as 500m, 2, 512Mi or 8Gi") from exc
    return base * (_BINARY[suffix] if suffix in _BINARY else _DECIMAL[suffix])


def cpu_millis(value: str | int | float) -> int:
    """CPU quantity → millicores, rounded up like the kubelet does (1m is the finest unit)."""
    millis = parse_quantity(value) * 1000
    return int(millis.to_integral_value(rounding="ROUND_CEILING"))


def memory_bytes(value: str | int | float) -> int:
    return int(parse_quantity(value).to_integral_value(rounding="ROUND_CEILING"))


def format_cpu(millis: int) -> str:
    return f"{millis // 1000}" if millis % 1000 == 0 else f"{millis}m"


def format_memory(n: int) -> str:
    for suffix, factor in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if n and n % factor == 0:
            return f"{n // factor}{suffix}"
    return str(n)
