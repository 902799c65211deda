"""Parsing and validation of the JSON messages devices send (docs/faredge-protocol.md).

Devices are untrusted: every message is size-checked before it is decoded, every field type- and
range-checked, and any failure raises `Dropped(reason, detail)` where the reason is a small fixed
set (metric label) and the detail names the field. Parsers return frozen values, never raw dicts.

Decoding uses orjson: it is strict where the protocol wants strictness (UTF-8 only, no NaN or
Infinity, bounded nesting; integers beyond 64 bits become floats, which the schema refuses) and
five times faster than the json module on a 64-byte telemetry message, which is most of the
bridge's per-message cost.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from math import isfinite
from typing import Any, NamedTuple, NoReturn, TypeGuard

import orjson

from faredge.errors import Dropped, Invalid
from faredge.protocol.settings import MAX_SENSORS, NAME_RE

# The one id rule (bridge, provisioning, firmware/micropython/config.py check_id): 1..32 of
# [A-Za-z0-9_.-], not starting with '.'. Ids are topic levels, usernames, file names and labels.
MAX_DEVICE_ID = 32
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,31}$")
MAX_MESSAGE_BYTES = 4096
MAX_BATCH = 32
MAX_READINGS = MAX_SENSORS
MAX_TEXT = 64
_MAX_INT = 2**63
# Sensor names already validated: a fleet uses a handful, and the regex is the costliest check
# of a telemetry message. Bounded, so hostile devices cannot grow it.
_NAMES_SEEN: set[str] = set()
_NAMES_CACHE = 1024
_IDS_SEEN: set[str] = set()  # the same for device ids
_IDS_CACHE = 4096
# Sample and Telemetry built without NamedTuple's Python-level __new__ (the same tuples, for
# every telemetry message; the fields are checked before)
_new = tuple.__new__

KINDS = ("birth", "telemetry", "twin/get", "twin/reported", "status")


def check_device_id(device_id: object, field: str = "id") -> str:
    """Device ids end up in MQTT topics, file names and metric labels: keep them plain."""
    if not isinstance(device_id, str) or not DEVICE_ID_RE.match(device_id):
        raise Invalid(
            field,
            f"{device_id!r} is not a device id ([A-Za-z0-9_.-], not starting with '.'; 1..32 chars)",
        )
    return device_id


@dataclass(frozen=True, slots=True)
class FreqCaps:
    """CPU frequencies a board accepts: a list of values, or low..high in steps of step."""

    values: tuple[int, ...] = ()
    low: int = 0
    high: int = 0
    step: int = 1

    def accepts(self, hz: int) -> bool:
        if self.values:
            return hz in self.values
        return self.low <= hz <= self.high and (hz - self.low) % self.step == 0

    def describe(self) -> str:
        if self.values:
            return ", ".join(str(v) for v in self.values)
        return f"{self.low}..{self.high} in steps of {self.step}"

    def to_json(self) -> list[int] | dict[str, int]:
        if self.values:
            return list(self.values)
        return {"min": self.low, "max": self.high, "step": self.step}


@dataclass(frozen=True, slots=True)
class Birth:
    id: str
    fw: str
    board: str
    boot: int
    sensors: tuple[str, ...]
    freq: int
    lost: int = 0  # QoS 1 telemetry the device's store-and-forward ring dropped since boot
    freqs: FreqCaps | None = None  # the CPU frequencies the board accepts (None: not reported)
    mpy: int = 0  # sys.implementation._mpy: the .mpy version it loads (0: not reported)


class Sample(NamedTuple):
    """One reading set. Sample and Telemetry are NamedTuples (immutable too): they are built for
    every telemetry message, and a tuple costs a fraction of a frozen dataclass's __init__."""

    up: int | None
    mem_free: int | None
    freq: int | None
    readings: tuple[tuple[str, float | None], ...]


class Telemetry(NamedTuple):
    id: str
    seq: int
    boot: int | None
    samples: tuple[Sample, ...]


@dataclass(frozen=True, slots=True)
class TwinGet:
    id: str


@dataclass(frozen=True, slots=True)
class TwinReported:
    id: str
    version: int
    settings: dict[str, Any]
    errors: dict[str, str]


@dataclass(frozen=True, slots=True)
class Status:
    id: str
    online: bool


Message = Birth | Telemetry | TwinGet | TwinReported | Status


def _bad(field: str, reason: str) -> Dropped:
    return Dropped("schema", f"{field}: {reason}")


def _int(obj: dict[str, Any], key: str, *, required: bool = True, where: str = "") -> int | None:
    """A non-negative integer field, or None when absent and optional."""
    value = obj.get(key)
    if value is None:
        if required:
            raise _bad(where + key, "missing")
        return None
    if not _uint(value):
        raise _bad(where + key, f"must be an integer >= 0, got {value!r:.40}")
    return value


def _text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key, "")
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise _bad(key, f"must be a string of at most {MAX_TEXT} chars")
    return value


def _sensor_name(name: str, field: str) -> None:
    if not NAME_RE.match(name):
        raise _bad(field, f"{name[:40]!r} is not a sensor name")
    if len(_NAMES_SEEN) < _NAMES_CACHE:
        _NAMES_SEEN.add(name)


def _uint(value: object) -> TypeGuard[int]:
    """A JSON non-negative integer (`type is int`: JSON true is no number)."""
    return type(value) is int and 0 <= value <= _MAX_INT


def _reject_ints(obj: dict[str, Any], required: tuple[str, ...], optional: tuple[str, ...]) -> NoReturn:
    """Raise the Dropped that names the first bad integer field (the slow path of a fast check)."""
    for key in required:
        _int(obj, key)
    for key in optional:
        _int(obj, key, required=False)
    raise AssertionError(f"called for valid fields {required + optional}")


def _readings(value: Any, field: str) -> tuple[tuple[str, float | None], ...]:
    if type(value) is not dict:
        raise _bad(field, "must be an object of sensor: number")
    if len(value) > MAX_READINGS:
        raise _bad(field, f"{len(value)} readings is over {MAX_READINGS}")
    for name, reading in value.items():
        if name not in _NAMES_SEEN:
            _sensor_name(name, field)
        kind = type(reading)
        if kind is float:
            if not isfinite(reading):
                raise _bad(f"{field}.{name}", f"must be a finite number, got {reading!r}")
        elif kind is not int and reading is not None:
            raise _bad(f"{field}.{name}", f"must be a finite number or null, got {reading!r:.40}")
    return tuple(value.items())


def _sample(obj: Any, where: str) -> Sample:
    """One sample; `where` prefixes field names in errors ("" or "batch[3].").

    The checks are inline: this runs for every telemetry message (see bench/bridge.py).
    """
    if type(obj) is not dict:
        raise _bad(where.rstrip(".") or "telemetry", "must be an object")
    up, mem_free, freq = obj.get("up"), obj.get("mem_free"), obj.get("freq")
    if not (
        (up is None or _uint(up)) and (mem_free is None or _uint(mem_free)) and (freq is None or _uint(freq))
    ):
        for key in ("up", "mem_free", "freq"):
            _int(obj, key, required=False, where=where)
    readings = obj.get("r")
    return _new(Sample, (up, mem_free, freq, () if readings is None else _readings(readings, where + "r")))


def _telemetry(obj: dict[str, Any], device_id: str) -> Telemetry:
    seq, boot = obj.get("seq"), obj.get("boot")
    if not (type(seq) is int and 0 <= seq <= _MAX_INT) or not (boot is None or _uint(boot)):  # _uint, inline
        _reject_ints(obj, ("seq",), ("boot",))
    batch = obj.get("batch")
    if batch is None:
        return _new(Telemetry, (device_id, seq, boot, (_sample(obj, ""),)))
    if type(batch) is not list or not 1 <= len(batch) <= MAX_BATCH:
        raise _bad("batch", f"must be a list of 1..{MAX_BATCH} samples")
    return Telemetry(device_id, seq, boot, tuple(_sample(s, f"batch[{i}].") for i, s in enumerate(batch)))


def _birth(obj: dict[str, Any], device_id: str) -> Birth:
    sensors = obj.get("sensors", [])
    if not isinstance(sensors, list) or len(sensors) > MAX_SENSORS:
        raise _bad("sensors", f"must be a list of at most {MAX_SENSORS} names")
    for name in sensors:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise _bad("sensors", f"{name!r:.40} is not a sensor name")
    return Birth(
        id=device_id,
        fw=_text(obj, "fw"),
        board=_text(obj, "board"),
        boot=_int(obj, "boot") or 0,
        sensors=tuple(sensors),
        freq=_int(obj, "freq", required=False) or 0,
        lost=_int(obj, "lost", required=False) or 0,
        freqs=parse_freq_caps(obj.get("caps")),
        mpy=_int(obj, "mpy", required=False) or 0,
    )


def parse_freq_caps(caps: Any) -> FreqCaps | None:
    """`caps.freq_hz` of a birth: a list of values, or {"min", "max", "step"}."""
    if caps is None:
        return None
    if type(caps) is not dict:
        raise _bad("caps", "must be an object")
    freq = caps.get("freq_hz")
    if freq is None:
        return None
    if type(freq) is list:
        if not 1 <= len(freq) <= 32 or not all(_uint(v) for v in freq):
            raise _bad("caps.freq_hz", "must be a list of 1..32 frequencies in Hz")
        return FreqCaps(values=tuple(freq))
    if type(freq) is dict:
        lo, hi, step = (_int(freq, k, where="caps.freq_hz.") for k in ("min", "max", "step"))
        assert lo is not None and hi is not None and step is not None
        if lo > hi or step < 1:
            raise _bad("caps.freq_hz", "needs min <= max and step >= 1")
        return FreqCaps(low=lo, high=hi, step=step)
    raise _bad("caps.freq_hz", "must be a list or {min, max, step}")


def _reported(obj: dict[str, Any], device_id: str) -> TwinReported:
    settings, errors = obj.get("settings", {}), obj.get("errors", {})
    if not isinstance(settings, dict):
        raise _bad("settings", "must be an object")
    if not isinstance(errors, dict) or not all(isinstance(v, str) for v in errors.values()):
        raise _bad("errors", "must be an object of key: reason")
    if len(settings) > 32 or len(errors) > 32:
        raise _bad("settings", "too many keys")
    return TwinReported(
        device_id, _int(obj, "version") or 0, settings, {k: v[:200] for k, v in errors.items()}
    )


def _status(obj: dict[str, Any], device_id: str) -> Status:
    online = obj.get("online")
    if not isinstance(online, bool):
        raise _bad("online", "must be true or false")
    return Status(device_id, online)


_PARSERS: dict[str, Callable[[dict[str, Any], str], Message]] = {
    "birth": _birth,
    "telemetry": _telemetry,
    "twin/get": lambda obj, device_id: TwinGet(device_id),
    "twin/reported": _reported,
    "status": _status,
}


def parse_message(kind: str, payload: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """Parse one message of the given kind; raise Dropped("oversize"|"json"|"schema"|"kind")."""
    parser = _PARSERS.get(kind)
    if parser is None:
        raise Dropped("kind", f"unknown message {kind[:40]!r}")
    if len(payload) > max_bytes:
        raise Dropped("oversize", f"{len(payload)} bytes > {max_bytes}")
    try:
        obj = orjson.loads(payload)  # strict: UTF-8 only, no NaN/Infinity, 64-bit integers
    except orjson.JSONDecodeError as exc:
        raise Dropped("json", str(exc)[:80]) from None
    if type(obj) is not dict:
        raise _bad("message", "must be a JSON object")
    device_id = obj.get("id")
    if type(device_id) is not str or device_id not in _IDS_SEEN:
        if not isinstance(device_id, str) or not DEVICE_ID_RE.match(device_id):
            raise _bad("id", f"{device_id!r:.40} is not a device id")
        if len(_IDS_SEEN) < _IDS_CACHE:
            _IDS_SEEN.add(device_id)
    return parser(obj, device_id)


def peek_id(payload: bytes) -> str | None:
    """The valid device id of a message, or None; never raises (transports use it before parsing)."""
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    device_id = obj.get("id") if type(obj) is dict else None
    return device_id if isinstance(device_id, str) and DEVICE_ID_RE.match(device_id) else None


def encode_desired(device_id: str, version: int, settings: dict[str, Any]) -> bytes:
    """The `twin/desired` message: always the full desired settings (protocol doc)."""
    return json.dumps(
        {"id": device_id, "version": version, "settings": settings}, separators=(",", ":"), sort_keys=True
    ).encode()
