"""The twin settings our firmware understands, as data: one `Knob` per key.

The CLI (`mlsysops devices set`) and the bridge's control socket validate a whole request with
`validate_settings` before anything is sent, so a bad value never reaches a device. Ranges follow
docs/faredge-protocol.md; `freq_hz` is only range-checked here, the board checks its own table.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from faredge.errors import Invalid

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
MAX_SENSORS = 32


def _int_in(lo: int, hi: int | None) -> Callable[[str, Any], Any]:
    def check(field: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(field, f"must be an integer, got {value!r}")
        if value < lo or (hi is not None and value > hi):
            raise Invalid(field, f"{value} is outside {lo}..{hi if hi is not None else 'inf'}")
        return value

    return check


def _sensor_list(field: str, value: Any) -> Any:
    if not isinstance(value, list | tuple):
        raise Invalid(field, f"must be a list of sensor names, got {value!r}")
    if len(value) > MAX_SENSORS:
        raise Invalid(field, f"{len(value)} sensors is over the limit of {MAX_SENSORS}")
    for name in value:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise Invalid(field, f"{name!r} is not a sensor name ([A-Za-z0-9_.-], 1..32 chars)")
    if len(set(value)) != len(value):
        raise Invalid(field, "sensor names repeat")
    return list(value)


def _parse_int(text: str) -> Any:
    try:
        return int(text, 0)
    except ValueError:
        return text  # the validator names the field and rejects it


def _parse_list(text: str) -> Any:
    return [s.strip() for s in text.split(",") if s.strip()]


@dataclass(frozen=True)
class Knob:
    name: str
    doc: str
    parse: Callable[[str], Any]
    check: Callable[[str, Any], Any]
    bounds: tuple[int, int] | None = None  # integer settings: the range both sides enforce
    board_checked: bool = False  # the device checks it against its board's own table


def _int_knob(name: str, doc: str, lo: int, hi: int, *, board_checked: bool = False) -> Knob:
    return Knob(name, doc, _parse_int, _int_in(lo, hi), (lo, hi), board_checked)


# The firmware's copy of these limits is RANGES in firmware/micropython/twin.py, asserted equal
# by tests/faredge/firmware/test_fw_settings.py.
KNOBS: Mapping[str, Knob] = {
    k.name: k
    for k in (
        _int_knob("interval_ms", "sampling interval in ms (100..3600000)", 100, 3_600_000),
        _int_knob(
            "freq_hz",
            "CPU frequency for machine.freq (board-checked)",
            1_000_000,
            1_000_000_000,
            board_checked=True,
        ),
        Knob(
            "sensors",
            "enabled sensors, comma separated on the CLI",
            _parse_list,
            _sensor_list,
            board_checked=True,
        ),
        _int_knob("batch", "readings per telemetry message (1..32)", 1, 32),
        _int_knob("reboot", "reboot counter: the device reboots when it changes", 0, 2**31 - 1),
    )
}


def validate_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Check every key and value; return a normalised copy or raise Invalid naming the key."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        knob = KNOBS.get(key)
        if knob is None:
            raise Invalid(f"settings.{key}", f"unknown setting (known: {', '.join(KNOBS)})")
        out[key] = knob.check(f"settings.{key}", value)
    return out


def parse_assignments(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`key=value` CLI arguments → validated settings; nothing is sent when one is wrong."""
    raw: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise Invalid(pair, "expected key=value")
        knob = KNOBS.get(key)
        if knob is None:
            raise Invalid(f"settings.{key}", f"unknown setting (known: {', '.join(KNOBS)})")
        raw[key] = knob.parse(text.strip())
    if not raw:
        raise Invalid("settings", "give at least one key=value")
    return validate_settings(raw)
