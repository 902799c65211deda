"""What the latest messages said about each device: in memory only, never persisted.

The registry (`faredge.registry`) holds what must survive a restart (who a device is, its twin);
this table holds what the next telemetry message replaces anyway (readings, memory, uptime,
message counts), so telemetry never rewrites the registry file. Not thread-safe by itself: the
router serialises every access under its lock, and hands other threads copies (`snapshot`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from faredge.protocol.messages import Telemetry
from faredge.registry import Device


@dataclass(slots=True)
class Live:
    """What the latest telemetry said about one device."""

    last_seen: float = 0.0
    seq: int = -1
    up: int | None = None
    mem_free: int | None = None
    freq: int | None = None
    readings: tuple[tuple[str, float | None], ...] = ()  # the latest sample's, as parsed
    messages: int = 0  # telemetry messages
    counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (transport, kind) -> valid messages

    def copy(self) -> Live:
        return replace(self, counts=dict(self.counts))

    def to_json(self) -> dict[str, Any]:
        return {
            "last_seen": self.last_seen,
            "seq": self.seq,
            "up": self.up,
            "mem_free": self.mem_free,
            "freq": self.freq,
            "readings": dict(self.readings),
            "messages": self.messages,
        }


class LiveTable:
    """Live state by device id; an unknown id reads as a fresh `Live`."""

    def __init__(self) -> None:
        self._live: dict[str, Live] = {}

    def _of(self, device_id: str) -> Live:
        live = self._live.get(device_id)
        if live is None:
            live = self._live[device_id] = Live()
        return live

    def find(self, device_id: str) -> Live | None:
        return self._live.get(device_id)

    def copy_of(self, device_id: str) -> Live:
        live = self._live.get(device_id)
        return Live() if live is None else live.copy()

    def count(self, device_id: str, transport: str, kind: str) -> None:
        """One more valid message of this kind (exported as faredge_messages_total)."""
        counts = self._of(device_id).counts
        key = (transport, kind)
        counts[key] = counts.get(key, 0) + 1

    def seen(self, device_id: str, now: float) -> None:
        self._of(device_id).last_seen = now

    def record(self, tel: Telemetry, transport: str, now: float) -> Live:
        """Take in one telemetry message (the hot path: one lookup, plain attribute writes)."""
        live = self._live.get(tel.id)
        if live is None:
            live = self._live[tel.id] = Live()
        live.last_seen = now
        live.seq = tel.seq
        live.messages += 1
        key = (transport, "telemetry")
        live.counts[key] = live.counts.get(key, 0) + 1
        live.readings = tel.samples[-1].readings  # a sensor disabled since is no longer shown
        for sample in tel.samples:
            if sample.mem_free is not None:
                live.mem_free = sample.mem_free
            if sample.freq is not None:
                live.freq = sample.freq
            if sample.up is not None:
                live.up = sample.up
        return live


def liveness_timeout(device: Device | None, minimum_s: float) -> float:
    """How long a device may stay silent: 3 x its sampling interval, at least `minimum_s`.

    The reported interval wins over the desired one (it is what the device runs now); an unknown
    device or one without an interval gets the minimum (protocol doc, "Liveness and hot-plug").
    """
    interval_ms = 0
    if device is not None:
        value = device.twin.reported.get("interval_ms", device.twin.desired.get("interval_ms", 0))
        interval_ms = value if isinstance(value, int) else 0
    return max(minimum_s, 3 * interval_ms / 1000)
