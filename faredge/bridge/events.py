"""Fan-out of bridge events to `mlsysops devices monitor` clients.

publish() never blocks the worker: each subscriber has a bounded queue and a slow subscriber
loses events (counted in its `missed` field, shown by monitor) instead of slowing the bridge.
"""

from __future__ import annotations

import queue
import threading
from typing import Any


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

    @property
    def active(self) -> bool:
        return self.subscribers > 0
