"""Bridge events: their shapes (`DeviceEvents`) and their fan-out to monitor clients (`EventHub`).

publish() never blocks the worker: each subscriber has a bounded queue and a slow subscriber
loses events (counted in its `missed` field, shown by monitor) instead of slowing the bridge.
Changes the node agent must hear about (births, online/offline, sensors) also go to the
inventory listener, which only sets a flag (`faredge.bridge.inventory`).
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Protocol

from faredge.protocol.messages import Birth
from faredge.twin import Twin


class Subscription:
    def __init__(self, hub: EventHub, size: int) -> None:
        self._hub = hub
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue(size)
        self.missed = 0

    def get(self, timeout: float) -> dict[str, Any] | None:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self._hub.unsubscribe(self)


class EventHub:
    def __init__(self, queue_size: int = 1000) -> None:
        self._size = queue_size
        self._subs: list[Subscription] = []
        self.subscribers = 0  # a plain attribute: the router checks it for every message
        self._lock = threading.Lock()

    def subscribe(self) -> Subscription:
        sub = Subscription(self, self._size)
        with self._lock:
            self._subs = [*self._subs, sub]
            self.subscribers = len(self._subs)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs = [s for s in self._subs if s is not sub]
            self.subscribers = len(self._subs)

    def publish(self, event: dict[str, Any]) -> None:
        for sub in self._subs:  # copy-on-write list: no lock on the hot path
            try:
                sub.queue.put_nowait(event)
            except queue.Full:
                sub.missed += 1


class ChangeListener(Protocol):
    def changed(self) -> None: ...


class DeviceEvents:
    """Every event the bridge emits, one method per kind, so their shapes live in one place."""

    def __init__(self, hub: EventHub, inventory: ChangeListener | None = None) -> None:
        self.hub = hub
        self.inventory = inventory

    def inventory_changed(self) -> None:
        if self.inventory is not None:
            self.inventory.changed()

    def birth(self, birth: Birth, transport: str) -> None:
        self.hub.publish(
            {
                "event": "birth",
                "id": birth.id,
                "transport": transport,
                "fw": birth.fw,
                "boot": birth.boot,
                "sensors": list(birth.sensors),
            }
        )

    def telemetry(self, device_id: str, seq: int, readings: tuple[tuple[str, float | None], ...]) -> None:
        """Only built when someone listens: this runs for every telemetry message."""
        if self.hub.subscribers:
            self.hub.publish({"event": "telemetry", "id": device_id, "seq": seq, "readings": dict(readings)})

    def online(self, device_id: str, online: bool, reason: str) -> None:
        self.hub.publish({"event": "online" if online else "offline", "id": device_id, "reason": reason})
        self.inventory_changed()

    def reported(self, device_id: str, outcome: str, twin: Twin) -> None:
        self.hub.publish(
            {
                "event": "twin",
                "id": device_id,
                "outcome": outcome,
                "reported_version": twin.reported_version,
                "desired_version": twin.desired_version,
                "errors": twin.errors,
            }
        )

    def desired(self, device_id: str, twin: Twin) -> None:
        self.hub.publish(
            {"event": "desired", "id": device_id, "version": twin.desired_version, "settings": twin.desired}
        )
