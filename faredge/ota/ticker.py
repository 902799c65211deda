"""A thread that calls one function every `interval_s` seconds between `start()` and `stop()`
(the OTA service's timeouts): nothing runs before `start()`, a failing call is logged, not fatal."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Ticker:
    def __init__(self, name: str, interval_s: float, call: Callable[[], None]) -> None:
        self.name = name
        self.interval_s = interval_s
        self._call = call
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            try:
                self._call()
            except Exception:
                log.exception("%s failed", self.name)
