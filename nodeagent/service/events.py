"""An in-process event bus with bounded, per-subscriber queues.

Publishing never blocks: an apply must not wait for a slow WatchEvents client. When a
subscriber's queue is full the oldest event is dropped and counted, so a client that falls
behind sees the newest events and can tell (through `dropped`) that it missed some.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


class EventKind(enum.Enum):
    """Mirrors Event.Kind of the node API (same names), without depending on it."""

    APPLIED = "APPLIED"
    DRIFT = "DRIFT"
    ERROR = "ERROR"
    RESET = "RESET"
    TELEMETRY_CONFIGURED = "TELEMETRY_CONFIGURED"
    DEVICES = "DEVICES"
    ENFORCED = "ENFORCED"


@dataclass(frozen=True)
class Event:
    kind: EventKind
    message: str
    mechanism: str = ""
    key: str = ""
    generation: int = 0
    details: Mapping[str, str] = field(default_factory=dict)
    time: float = field(default_factory=time.time)


class Subscription:
    """One subscriber's bounded queue; obtained from EventBus.subscribe()."""

    def __init__(self, bus: EventBus, kinds: frozenset[EventKind], maxsize: int) -> None:
        self._bus = bus
        self.kinds = kinds
        self._queue: deque[Event] = deque()
        self._maxsize = maxsize
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0

    def offer(self, event: Event) -> None:
        if self.kinds and event.kind not in self.kinds:
            return
        with self._cond:
            if self._closed:
                return
            if len(self._queue) >= self._maxsize:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(event)
            self._cond.notify()

    def get(self, timeout: float) -> Event | None:
        """The next event, or None after `timeout` seconds or once the subscription is closed."""
        with self._cond:
            if not self._queue and not self._closed:
                self._cond.wait(timeout)
            return self._queue.popleft() if self._queue else None

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Detach from the bus and wake a waiting get(); safe to call more than once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._bus.unsubscribe(self)


class EventBus:
    """Fan-out of events to subscribers. `queue_size` bounds every subscriber's backlog."""

    def __init__(self, queue_size: int = 256) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self._queue_size = queue_size
        self._subscribers: list[Subscription] = []
        self._lock = threading.Lock()

    def subscribe(self, kinds: Iterable[EventKind] = ()) -> Subscription:
        """Events of the given kinds (every kind when empty) published from now on."""
        sub = Subscription(self, frozenset(kinds), self._queue_size)
        with self._lock:
            self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    def publish(self, event: Event) -> None:
        with self._lock:
            subscribers = tuple(self._subscribers)
        for sub in subscribers:
            sub.offer(event)

    def close(self) -> None:
        """End every subscription (at shutdown), so streaming clients return promptly."""
        with self._lock:
            subscribers = tuple(self._subscribers)
        for sub in subscribers:
            sub.close()
