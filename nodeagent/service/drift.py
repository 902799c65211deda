"""The periodic drift check: one background thread calling Engine.check_drift.

Somebody (an operator, another daemon, a reboot of a cgroup) may change a knob behind the
agent's back. Reporting that is always on; correcting it (`drift.enforce`) is opt-in, because
fighting another controller in a loop is worse than telling the operator.
"""

from __future__ import annotations

import logging
import threading

from nodeagent.service.engine import Engine

log = logging.getLogger(__name__)


class DriftMonitor:
    def __init__(self, engine: Engine, interval_s: float, enforce: bool) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self._engine = engine
        self._interval = interval_s
        self._enforce = enforce
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="drift", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                report = self._engine.check_drift(enforce=self._enforce)
            except Exception:  # a bug must not end drift checking for the daemon's lifetime
                log.exception("drift check failed")
                continue
            if report.drifted:
                log.info("drift knobs=%d enforced=%s", len(report.drifted), report.enforced)
