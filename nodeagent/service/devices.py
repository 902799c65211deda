"""Devices reported by other daemons on this node (the far-edge bridge), per source.

Each report is the full list from its source and replaces that source's previous one, so a
device that disappears from the bridge disappears here without a separate delete call.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from nodeagent.errors import InvalidSpec
from nodeagent.service.events import Event, EventBus, EventKind


class HasId(Protocol):
    @property
    def id(self) -> str: ...


D = TypeVar("D", bound=HasId)


class DeviceRegistry(Generic[D]):
    def __init__(self, events: EventBus) -> None:
        self._events = events
        self._by_source: dict[str, tuple[D, ...]] = {}
        self._lock = threading.Lock()

    def report(self, source: str, devices: Sequence[D]) -> int:
        """Replace `source`'s devices; returns how many were accepted (all, or none on bad input)."""
        if not source.strip():
            raise InvalidSpec("source", "must name the reporting component, e.g. 'faredge'")
        seen: set[str] = set()
        for i, device in enumerate(devices):
            if not device.id:
                raise InvalidSpec(f"devices[{i}].id", "must not be empty")
            if device.id in seen:
                raise InvalidSpec(f"devices[{i}].id", f"duplicate device id {device.id!r}")
            seen.add(device.id)
        with self._lock:
            if devices:
                self._by_source[source] = tuple(devices)
            else:
                self._by_source.pop(source, None)
        self._events.publish(
            Event(EventKind.DEVICES, f"{source} reports {len(devices)} devices", details={"source": source})
        )
        return len(devices)

    def devices(self) -> list[D]:
        """Every reported device, grouped by source in name order."""
        with self._lock:
            return [d for source in sorted(self._by_source) for d in self._by_source[source]]
