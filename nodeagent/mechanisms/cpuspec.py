"""Reading a profile section field by field, with errors that name the exact field.

A profile arrives as the proto JSON mapping (proto field names, dicts and lists). These helpers
check shape and type only; what a value means is checked by each mechanism's knob table. Shared
by the cpufreq and cgroups mechanisms (the generic name `fields.py` belongs to no one yet).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from nodeagent.errors import InvalidSpec, bounded

#: A 64-bit integer as the proto JSON mapping prints it: ASCII digits only (isdigit() would take
#: Arabic-Indic or full-width digits, which int() then reads as 0).
_DECIMAL = re.compile(r"-?[0-9]{1,20}", re.ASCII)


def mapping(value: Any, field: str, allowed: Sequence[str]) -> Mapping[str, Any]:
    """A dict whose keys are all in `allowed` (a typo must not be silently ignored)."""
    if not isinstance(value, Mapping):
        raise InvalidSpec(field, f"must be a mapping, not {type(value).__name__}")
    for key in value:
        if key not in allowed:
            raise InvalidSpec(f"{field}.{key}", f"unknown field (expected one of: {', '.join(allowed)})")
    return value


def items(section: Mapping[str, Any], name: str, field: str) -> list[Any]:
    """The repeated field `name` of a section (absent = empty)."""
    value = section.get(name, [])
    if not isinstance(value, list | tuple):
        raise InvalidSpec(f"{field}.{name}", f"must be a list, not {type(value).__name__}")
    return list(value)


def optional_int(entry: Mapping[str, Any], name: str, field: str) -> int | None:
    """An integer field, or None when absent.

    Decimal strings are accepted because the proto JSON mapping prints 64-bit integers as
    strings; booleans, floats and other strings are refused.
    """
    value = entry.get(name)
    if value is None:
        return None
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        value = int(value)  # the proto JSON mapping prints 64-bit integers as strings
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSpec(f"{field}.{name}", f"must be an integer, not {bounded(repr(value))}")
    return value


def optional_str(entry: Mapping[str, Any], name: str, field: str) -> str | None:
    """A string field, or None when absent."""
    value = entry.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidSpec(f"{field}.{name}", f"must be a string, not {bounded(repr(value))}")
    return value
