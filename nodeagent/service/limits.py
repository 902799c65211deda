"""Request limits: what one request may carry, checked before any work and named in the error.

A request that exceeds a limit is the caller's mistake (INVALID_ARGUMENT, nothing read or
written), and the error says which limit (`limits.<name>`) so an operator knows what to raise.
The checks are a single walk over the profile as JSON, cheap and bounded by the limits
themselves: they run before a mechanism sees the profile and outside the engine's lock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nodeagent.errors import InvalidSpec, bounded


@dataclass(frozen=True)
class RequestLimits:
    """Bounds on one request (defaults generous for any real profile or device list)."""

    max_message_bytes: int = 4 * 1024 * 1024  # gRPC receive limit (the server refuses larger)
    max_depth: int = 12  # nesting of a profile's JSON (maps and lists)
    max_items: int = 1024  # entries of any list or map in a profile
    max_string_chars: int = 4096  # characters of any string in a profile
    max_values: int = 65536  # values in a whole profile
    max_interfaces_per_netns: int = 256  # network.interfaces naming one namespace
    max_devices_per_source: int = 4096  # ReportDevices: devices of one source
    max_sources: int = 16  # ReportDevices: distinct sources at once
    max_report_bytes: int = 1024 * 1024  # ReportDevices: the devices of one report, serialised
    max_label_chars: int = 128  # source, requester


def check_profile(profile: Mapping[str, Any], limits: RequestLimits) -> None:
    """InvalidSpec naming the first field of `profile` that exceeds a limit."""
    budget = [limits.max_values]
    _walk(profile, "", 0, limits, budget)
    _check_interfaces(profile, limits)


def _check_interfaces(profile: Mapping[str, Any], limits: RequestLimits) -> None:
    """At most max_interfaces_per_netns entries of network.interfaces per namespace."""
    network = profile.get("network")
    interfaces = network.get("interfaces") if isinstance(network, Mapping) else None
    if not isinstance(interfaces, list):
        return
    counts: dict[str, int] = {}
    for i, entry in enumerate(interfaces):
        netns = entry.get("netns", "") if isinstance(entry, Mapping) else ""
        key = netns if isinstance(netns, str) else ""
        counts[key] = counts.get(key, 0) + 1
        if counts[key] > limits.max_interfaces_per_netns:
            raise InvalidSpec(
                f"network.interfaces[{i}]",
                f"more than {limits.max_interfaces_per_netns} interfaces in namespace "
                f"{bounded(key, 40) or '(own)'!r} (limits.max_interfaces_per_netns)",
            )


def _walk(value: Any, path: str, depth: int, limits: RequestLimits, budget: list[int]) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise InvalidSpec(path or "profile", f"more than {limits.max_values} values (limits.max_values)")
    if isinstance(value, str):
        if len(value) > limits.max_string_chars:
            reason = f"{len(value)} characters, more than {limits.max_string_chars}"
            raise InvalidSpec(path, f"{reason} (limits.max_string_chars)")
        return
    if not isinstance(value, Mapping | list | tuple):
        return
    if depth >= limits.max_depth:
        raise InvalidSpec(path, f"nested deeper than {limits.max_depth} levels (limits.max_depth)")
    if len(value) > limits.max_items:
        raise InvalidSpec(path, f"{len(value)} entries, more than {limits.max_items} (limits.max_items)")
    if isinstance(value, Mapping):
        for key, item in value.items():
            name = bounded(str(key), 64)
            where = f"{path}.{name}" if path else name
            if len(str(key)) > limits.max_string_chars:
                raise InvalidSpec(where, "field name too long (limits.max_string_chars)")
            _walk(item, where, depth + 1, limits, budget)
    else:
        for i, item in enumerate(value):
            _walk(item, f"{path}[{i}]", depth + 1, limits, budget)


def clean_label(text: str, limits: RequestLimits) -> str:
    """A caller-supplied name (source, requester) safe to store, log and show: control
    characters (NUL, ESC of ANSI sequences, newlines) removed, at most max_label_chars."""
    printable = "".join(c for c in text if c.isprintable())
    return printable[: limits.max_label_chars]


#: Repeated fields bounded by a limit of their own rather than max_items (message field -> limit).
OWN_LIMITS = {"devices": "max_devices_per_source"}


def check_message(message: Any, limits: RequestLimits, path: str = "") -> None:
    """The same limits on a decoded protobuf message, before it is converted to anything: list
    lengths and string sizes are checked field by field, so a 50,000-entry list is refused
    without building 50,000 dicts. Maps (Struct, attributes) are walked like lists of values."""
    for field, value in message.ListFields():
        where = f"{path}.{field.name}" if path else field.name
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            _check_count(len(value), where, limits, "max_items")
            for key, item in value.items():
                _check_string(key, f"{where}.{bounded(str(key), 40)}", limits)
                entry = field.message_type.fields_by_name["value"]
                _check_value(item, f"{where}.{bounded(str(key), 40)}", limits, entry)
            continue
        if field.is_repeated:
            _check_count(len(value), where, limits, OWN_LIMITS.get(field.name, "max_items"))
            for i, item in enumerate(value):
                _check_value(item, f"{where}[{i}]", limits, field)
        else:
            _check_value(value, where, limits, field)


def _check_value(value: Any, where: str, limits: RequestLimits, field: Any) -> None:
    if isinstance(value, str):
        _check_string(value, where, limits)
    elif field.message_type is not None and hasattr(value, "ListFields"):
        if where.count(".") + where.count("[") > 4 * limits.max_depth:
            raise InvalidSpec(where, f"nested deeper than {limits.max_depth} levels (limits.max_depth)")
        check_message(value, limits, where)


def _check_count(count: int, where: str, limits: RequestLimits, limit: str) -> None:
    if count > getattr(limits, limit):
        raise InvalidSpec(where, f"{count} entries, more than {getattr(limits, limit)} (limits.{limit})")


def _check_string(value: str, where: str, limits: RequestLimits) -> None:
    if len(value) > limits.max_string_chars:
        raise InvalidSpec(
            where, f"{len(value)} characters, more than {limits.max_string_chars} (limits.max_string_chars)"
        )
