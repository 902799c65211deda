"""Keeps the node agent's device inventory accurate (ReportDevices), without ever blocking routing.

The router only calls `changed()` (sets a flag). A thread waits until changes stop for
`debounce_s` (a reconnect storm becomes one report, but no later than `max_delay_s` after the
first change), then sends the *whole* inventory: reports are idempotent, so a lost one is simply
superseded. When the agent is down it retries with exponential backoff up to `max_backoff_s`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from faredge.errors import Unavailable
from faredge.metrics import BridgeMetrics
from faredge.registry import Device

log = logging.getLogger(__name__)


class InventorySink(Protocol):
    def report(self, devices: Sequence[Device]) -> int: ...


class InventoryReporter:
    def __init__(
        self,
        sink: InventorySink,
        snapshot: Callable[[], Sequence[Device]],
        metrics: BridgeMetrics,
        *,
        debounce_s: float = 0.5,
        max_delay_s: float = 5.0,
        min_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ) -> None:
        self._sink = sink
        self._snapshot = snapshot
        self._metrics = metrics
        self._debounce = debounce_s
        self._max_delay = max_delay_s
        self._min_backoff = min_backoff_s
        self._max_backoff = max_backoff_s
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def changed(self) -> None:
        self._dirty.set()

    def start(self) -> None:
        self._dirty.set()  # the first report tells the agent what we know after a restart
        self._thread = threading.Thread(target=self._run, name="faredge-inventory", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        backoff = self._min_backoff
        while not self._stop.is_set():
            self._dirty.wait()
            if self._stop.is_set():
                return
            self._settle()
            try:
                self._sink.report(self._snapshot())
            except Unavailable as exc:
                self._metrics.inventory.labels("error").inc()
                log.warning("node agent unavailable, retrying in %.1fs: %s", backoff, exc)
                self._dirty.set()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            self._metrics.inventory.labels("ok").inc()
            backoff = self._min_backoff

    def _settle(self) -> None:
        """Wait until no change arrived for debounce_s (bounded by max_delay_s)."""
        deadline = time.monotonic() + self._max_delay
        self._dirty.clear()
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._dirty.wait(min(self._debounce, remaining)):
                return
            self._dirty.clear()
