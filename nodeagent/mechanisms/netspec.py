"""Validation of the profile's `network` section, without looking at the host.

Input is the proto3 JSON mapping of NetworkProfile (proto field names, defaults omitted):

    {"interfaces": [
        {"name": "veth0", "netns": "demo",
         "htb": {"default_class": 16, "classes": [{"minor": 16, "rate": "10mbit", "ceil": "20mbit"}]}},
        {"name": "veth1", "netns": "demo", "tbf": {"rate": "1mbit", "burst": "32kb", "latency": "50ms"}},
        {"name": "eth9", "remove": true}]}

Output is one Entry per interface: its knob key, the canonical root (None for `remove`), and the
field path for errors found later against the host (network.py checks namespaces, interfaces,
MTU, kernel support). Every error is InvalidSpec naming the exact field and the reason.

HTB class minors are numbers: `minor: 16` is the class tc prints as `6d6c:10` (tc spells
minors in hex). Classes hang directly below the root; `ceil` defaults to `rate`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from nodeagent.errors import InvalidSpec
from nodeagent.mechanisms import tcunits
from nodeagent.mechanisms.tcmodel import (
    U32_MAX,
    HtbClass,
    HtbRoot,
    PschedClock,
    TbfRoot,
    tbf_canonical,
    tbf_encode,
)

MAX_RATE = 500 * 10**9  # bytes/s = 4tbit: beyond any NIC, so certainly a typo
MAX_HTB_CLASSES = 1024
MAX_LATENCY_US = 10 * 10**6  # a queue of more than 10 s is a mistake, not a shaping policy
IFNAMSIZ = 16
OWN_NETNS_KEY = "-"  # stands for the agent's own namespace in knob keys

T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    """One interface, in a named namespace or ("") the agent's own."""

    netns: str
    ifname: str

    @property
    def key(self) -> str:
        return f"{self.netns or OWN_NETNS_KEY}/{self.ifname}/root"

    @classmethod
    def from_key(cls, key: str) -> Target:
        parts = key.split("/")
        if len(parts) != 3 or parts[2] != "root" or not parts[0] or not parts[1]:
            raise ValueError(f"{key!r} is not a network knob (<netns or ->/<ifname>/root)")
        return cls("" if parts[0] == OWN_NETNS_KEY else parts[0], parts[1])


@dataclass(frozen=True)
class Entry:
    target: Target
    root: HtbRoot | TbfRoot | None
    field: str  # e.g. "network.interfaces[2]"


def parse_section(section: Mapping[str, Any], field: str, clock: PschedClock) -> list[Entry]:
    """Check the whole section; return the desired root of every interface it names."""
    _check_keys(section, field, {"interfaces"})
    items = _list(section.get("interfaces", []), f"{field}.interfaces")
    entries: list[Entry] = []
    seen: dict[Target, str] = {}
    for i, item in enumerate(items):
        path = f"{field}.interfaces[{i}]"
        entry = _parse_interface(item, path, clock)
        if entry.target in seen:
            raise InvalidSpec(
                f"{path}.name", f"{entry.target.ifname!r} is already shaped by {seen[entry.target]}"
            )
        seen[entry.target] = path
        entries.append(entry)
    return entries


def _parse_interface(raw: object, path: str, clock: PschedClock) -> Entry:
    item = _object(raw, path)
    _check_keys(item, path, {"name", "netns", "htb", "tbf", "remove"})
    target = Target(_netns(item.get("netns", ""), f"{path}.netns"), _ifname(item.get("name"), f"{path}.name"))
    remove = _flag(item.get("remove", False), f"{path}.remove")
    present = [k for k in ("htb", "tbf") if item.get(k) is not None]
    if len(present) == 2:
        raise InvalidSpec(f"{path}.tbf", "htb and tbf are exclusive: an interface has one root qdisc")
    if remove and present:
        raise InvalidSpec(
            f"{path}.remove", f"remove: true contradicts {present[0]} (remove deletes the root qdisc)"
        )
    if remove:
        return Entry(target, None, path)
    if not present:
        raise InvalidSpec(path, "needs one of htb, tbf or remove: true")
    if present[0] == "htb":
        return Entry(target, _parse_htb(item["htb"], f"{path}.htb"), path)
    return Entry(target, _parse_tbf(item["tbf"], f"{path}.tbf", clock), path)


def _parse_htb(raw: object, path: str) -> HtbRoot:
    obj = _object(raw, path)
    _check_keys(obj, path, {"default_class", "classes"})
    classes = _list(obj.get("classes", []), f"{path}.classes")
    if not classes:
        raise InvalidSpec(
            f"{path}.classes", "needs at least one class (an empty HTB drops unclassified traffic)"
        )
    if len(classes) > MAX_HTB_CLASSES:
        raise InvalidSpec(
            f"{path}.classes", f"{len(classes)} classes is more than the {MAX_HTB_CLASSES} allowed"
        )
    parsed: dict[int, HtbClass] = {}
    for j, raw_class in enumerate(classes):
        cls = _parse_class(raw_class, f"{path}.classes[{j}]")
        if cls.minor in parsed:
            raise InvalidSpec(f"{path}.classes[{j}].minor", f"{cls.minor} is used by another class already")
        parsed[cls.minor] = cls
    default = _integer(obj.get("default_class", 0), f"{path}.default_class", 0, 0xFFFF)
    if default not in parsed:
        known = ", ".join(str(m) for m in sorted(parsed))
        raise InvalidSpec(f"{path}.default_class", f"{default} is not among the class minors ({known})")
    return HtbRoot(default, tuple(parsed[m] for m in sorted(parsed)))


def _parse_class(raw: object, path: str) -> HtbClass:
    obj = _object(raw, path)
    _check_keys(obj, path, {"minor", "rate", "ceil"})
    minor = _integer(obj.get("minor", 0), f"{path}.minor", 1, 0xFFFF)
    rate = _rate(obj.get("rate", ""), f"{path}.rate")
    ceil = _rate(obj["ceil"], f"{path}.ceil") if obj.get("ceil") else rate
    if ceil < rate:
        raise InvalidSpec(
            f"{path}.ceil",
            f"{tcunits.format_rate(ceil)} is below the rate {tcunits.format_rate(rate)} "
            "(ceil must be >= rate)",
        )
    return HtbClass(minor, rate, ceil)


def _parse_tbf(raw: object, path: str, clock: PschedClock) -> TbfRoot:
    obj = _object(raw, path)
    _check_keys(obj, path, {"rate", "burst", "latency"})
    rate = _rate(obj.get("rate", ""), f"{path}.rate")
    if rate > U32_MAX:
        raise InvalidSpec(f"{path}.rate", f"TBF rates are limited to {tcunits.format_rate(U32_MAX)} here")
    burst = _unit(tcunits.parse_size, obj.get("burst", ""), f"{path}.burst")
    latency = _unit(tcunits.parse_time, obj.get("latency", ""), f"{path}.latency")
    if not 1 <= latency <= MAX_LATENCY_US:
        raise InvalidSpec(f"{path}.latency", f"{tcunits.format_time(latency)} is outside 1us..10s")
    root = TbfRoot(rate, burst, latency)
    params = tbf_encode(root, clock)
    if params.buffer < 1:
        raise InvalidSpec(f"{path}.burst", f"{burst} bytes is less than one scheduler tick at this rate")
    if params.buffer > U32_MAX:
        raise InvalidSpec(
            f"{path}.burst", f"{burst} bytes takes longer than the kernel can count at this rate"
        )
    if params.limit > U32_MAX:
        raise InvalidSpec(f"{path}.latency", "queue limit (rate x latency + burst) exceeds 4 GiB")
    return tbf_canonical(root, clock)


# ---------------------------------------------------------------- field helpers


def _check_keys(obj: Mapping[str, object], path: str, allowed: set[str]) -> None:
    for key in obj:
        if key not in allowed:
            raise InvalidSpec(
                f"{path}.{key}", f"unknown field (expected one of {', '.join(sorted(allowed))})"
            )


def _object(value: object, path: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise _wrong_type(path, "an object", value)
    return value


def _list(value: object, path: str) -> list[object]:
    if not isinstance(value, list):
        raise _wrong_type(path, "a list", value)
    return value


def _flag(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise _wrong_type(path, "true or false", value)
    return value


def _text(value: object, path: str, what: str) -> str:
    if not isinstance(value, str):
        raise _wrong_type(path, what, value)
    return value


def _wrong_type(path: str, what: str, value: object) -> InvalidSpec:
    return InvalidSpec(path, f"must be {what}, not {type(value).__name__}")


def _integer(value: object, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSpec(path, f"must be an integer, not {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidSpec(path, f"{value} is outside {low}..{high}")
    return value


def _unit(parse: Callable[[object], T], value: object, path: str) -> T:
    try:
        return parse(value)
    except ValueError as exc:
        raise InvalidSpec(path, str(exc)) from exc


def _rate(value: object, path: str) -> int:
    rate = _unit(tcunits.parse_rate, value, path)
    if rate < 1:
        raise InvalidSpec(path, f"{value!r} is below 8bit (1 byte/s), the smallest rate the kernel stores")
    if rate > MAX_RATE:
        raise InvalidSpec(path, f"{value!r} is above {tcunits.format_rate(MAX_RATE)}: surely a typo")
    return rate


def _ifname(value: object, path: str) -> str:
    name = _text(value, path, "an interface name") if value is not None else ""
    if not name:
        raise InvalidSpec(path, "is required")
    if len(name) >= IFNAMSIZ or name in (".", "..") or any(c in name for c in "/:") or _has_space(name):
        raise InvalidSpec(
            path, f"{name!r} is not a valid interface name (max 15 chars, no '/', ':' or spaces)"
        )
    return name


def _netns(value: object, path: str) -> str:
    name = _text(value, path, "a namespace name")
    if name == OWN_NETNS_KEY or name in (".", "..") or "/" in name or _has_space(name) or len(name) > 255:
        raise InvalidSpec(path, f"{name!r} is not a valid namespace name")
    return name


def _has_space(text: str) -> bool:
    return any(c.isspace() for c in text)
