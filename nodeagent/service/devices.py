"""Devices reported by other daemons on this node (the far-edge bridge), per source.

Each report is the full list from its source and replaces that source's previous one, so a
device that disappears from the bridge disappears here without a separate delete call.

Bounded (service/limits.py): devices per source, sources at once, and the serialised size of one
report and of all of them together, so no reporter can grow the agent's memory or make the
inventory too large for its clients (gRPC's default receive limit is 4 MiB). A report over a
limit is refused whole, naming the limit, and the previous list of that source stays.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from nodeagent.errors import InvalidSpec, bounded
from nodeagent.service.events import Event, EventBus, EventKind
from nodeagent.service.limits import RequestLimits, clean_label


class HasId(Protocol):
    @property
    def id(self) -> str: ...


D = TypeVar("D", bound=HasId)

#: The serialised size of all reported devices together, at most (the inventory carries them).
MAX_TOTAL_DEVICE_BYTES = 2 * 1024 * 1024


def _message_size(device: object) -> int:
    size = getattr(device, "ByteSize", None)
    return int(size()) if callable(size) else 0


class DeviceRegistry(Generic[D]):
    def __init__(
        self,
        events: EventBus,
        limits: RequestLimits | None = None,
        size: Callable[[D], int] = _message_size,
    ) -> None:
        self._events = events
        self._limits = limits or RequestLimits()
        self._size = size
        self._by_source: dict[str, tuple[D, ...]] = {}
        self._bytes: dict[str, int] = {}
        self._lock = threading.Lock()

    def report(self, source: str, devices: Sequence[D]) -> int:
        """Replace `source`'s devices; returns how many were accepted (all, or none on bad input)."""
        limits = self._limits
        source = clean_label(source, limits).strip()
        if not source:
            raise InvalidSpec("source", "must name the reporting component, e.g. 'faredge'")
        if len(devices) > limits.max_devices_per_source:
            raise InvalidSpec(
                "devices",
                f"{len(devices)} devices, more than {limits.max_devices_per_source} per source "
                "(limits.max_devices_per_source)",
            )
        seen: set[str] = set()
        total = 0
        for i, device in enumerate(devices):
            if not device.id:
                raise InvalidSpec(f"devices[{i}].id", "must not be empty")
            if len(device.id) > limits.max_label_chars or not device.id.isprintable():
                raise InvalidSpec(
                    f"devices[{i}].id",
                    f"{bounded(repr(device.id), 40)} is not a printable id of at most "
                    f"{limits.max_label_chars} characters (limits.max_label_chars)",
                )
            if device.id in seen:
                raise InvalidSpec(f"devices[{i}].id", f"duplicate device id {device.id!r}")
            seen.add(device.id)
            total += self._size(device)
        if total > limits.max_report_bytes:
            raise InvalidSpec(
                "devices", f"{total} bytes, more than {limits.max_report_bytes} (limits.max_report_bytes)"
            )
        with self._lock:
            self._check_room(source, total, bool(devices))
            if devices:
                self._by_source[source] = tuple(devices)
                self._bytes[source] = total
            else:
                self._by_source.pop(source, None)
                self._bytes.pop(source, None)
        self._events.publish(
            Event(EventKind.DEVICES, f"{source} reports {len(devices)} devices", details={"source": source})
        )
        return len(devices)

    def _check_room(self, source: str, size: int, adding: bool) -> None:
        if not adding:
            return
        others = {s: n for s, n in self._bytes.items() if s != source}
        if source not in self._by_source and len(others) >= self._limits.max_sources:
            raise InvalidSpec(
                "source",
                f"{len(others)} sources report devices already, the most allowed (limits.max_sources)",
            )
        if sum(others.values()) + size > MAX_TOTAL_DEVICE_BYTES:
            raise InvalidSpec(
                "devices",
                f"the devices of all sources would exceed {MAX_TOTAL_DEVICE_BYTES} bytes "
                "(the inventory must stay readable for every client)",
            )

    def devices(self) -> list[D]:
        """Every reported device, grouped by source in name order."""
        with self._lock:
            return [d for source in sorted(self._by_source) for d in self._by_source[source]]
