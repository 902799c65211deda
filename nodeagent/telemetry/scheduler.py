"""One thread samples every enabled collector at its own interval into a cache.

Why a cache: a scrape then costs a dictionary copy, however often Prometheus (or a curious
operator) asks, and the interval an operator sets through the API is the real sampling rate.
Why one thread and Event.wait(next deadline): an idle agent wakes only when a sample is due
(a few times a minute with the defaults), and a live re-configuration wakes it at once.

`Schedule` is the pure part (what is due when) so its rules are tested without threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from nodeagent.telemetry.base import PREFIX, Collector
from nodeagent.telemetry.settings import CollectorSettings

log = logging.getLogger(__name__)


class Schedule:
    """Next due time of every enabled collector, on a monotonic clock in seconds."""

    def __init__(self) -> None:
        self._interval: dict[str, float] = {}
        self._due: dict[str, float] = {}
        self._last: dict[str, float] = {}

    def configure(self, settings: Iterable[CollectorSettings], now: float) -> None:
        """Adopt new settings. A newly enabled collector is due at once; a re-timed one is due
        one new interval after its last sample (at once if that is already past)."""
        enabled = {s.name: s.interval_ms / 1000 for s in settings if s.enabled}
        for name in list(self._interval):
            if name not in enabled:
                del self._interval[name], self._due[name]
                self._last.pop(name, None)
        for name, interval in enabled.items():
            if name not in self._interval:
                self._due[name] = now
            elif interval != self._interval[name]:
                last = self._last.get(name)
                self._due[name] = now if last is None else max(now, last + interval)
            self._interval[name] = interval

    def enabled(self) -> frozenset[str]:
        return frozenset(self._interval)

    def due(self, now: float) -> list[str]:
        return sorted(name for name, at in self._due.items() if at <= now)

    def sampled(self, name: str, now: float) -> None:
        """Record a sample; keep the cadence (no drift from sampling time) but never schedule in
        the past, so a stalled machine does not trigger a burst of catch-up samples."""
        if name not in self._interval:
            return
        self._last[name] = now
        self._due[name] = max(self._due[name] + self._interval[name], now)

    def next_deadline(self) -> float | None:
        return min(self._due.values(), default=None)


@dataclass(frozen=True)
class Sample:
    families: tuple[Metric, ...]
    ok: bool
    duration_seconds: float


class Sampler:
    """The scheduler thread and the cache it fills; `collect()` serves the cache."""

    def __init__(
        self,
        collectors: Mapping[str, Collector],
        settings: Sequence[CollectorSettings],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._collectors = dict(collectors)
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._cache: dict[str, Sample] = {}
        self._schedule = Schedule()
        self._schedule.configure(settings, clock())

    def configure(self, settings: Sequence[CollectorSettings]) -> None:
        """Apply already validated settings; disabled collectors' series vanish immediately."""
        with self._lock:
            self._schedule.configure(settings, self._clock())
            enabled = self._schedule.enabled()
            for name in list(self._cache):
                if name not in enabled:
                    del self._cache[name]
        self._wake.set()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="telemetry-sampler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        self._wake.set()
        thread.join(timeout)

    def sample_due(self) -> float | None:
        """Sample every due collector once; return the next deadline (the thread's one step)."""
        with self._lock:
            due = self._schedule.due(self._clock())
        for name in due:
            sample = self._sample(name)
            with self._lock:
                if name in self._schedule.enabled():  # not disabled while we were sampling
                    self._cache[name] = sample
                    self._schedule.sampled(name, self._clock())
        with self._lock:
            return self._schedule.next_deadline()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()  # before reading the schedule: a configure() after this wakes us
            deadline = self.sample_due()
            timeout = None if deadline is None else max(0.0, deadline - self._clock())
            self._wake.wait(timeout)

    def _sample(self, name: str) -> Sample:
        started = self._clock()
        try:
            families = tuple(self._collectors[name].collect())
            ok = True
        except Exception:  # one broken collector must not stop the others
            log.exception("telemetry collector %s failed", name)
            families, ok = (), False
        return Sample(families, ok, self._clock() - started)

    def collect(self) -> list[Metric]:
        """The cached families of enabled collectors, plus whether and how fast each sampled."""
        with self._lock:
            cache = sorted(self._cache.items())
        success = GaugeMetricFamily(
            PREFIX + "collector_success",
            "Whether the collector's last sample succeeded (1) or not (0).",
            labels=["collector"],
        )
        duration = GaugeMetricFamily(
            PREFIX + "collector_duration_seconds",
            "How long the collector's last sample took.",
            labels=["collector"],
        )
        families: list[Metric] = []
        for name, sample in cache:
            success.add_metric([name], 1.0 if sample.ok else 0.0)
            duration.add_metric([name], sample.duration_seconds)
            families.extend(sample.families)
        return [*families, success, duration]

    def describe(self) -> list[Metric]:
        """Nothing to pre-declare: the set of families changes live with the settings."""
        return []
