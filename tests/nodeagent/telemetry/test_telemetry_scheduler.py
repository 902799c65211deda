"""What is sampled when: the pure Schedule, and the Sampler's cache, on a fake clock."""

from __future__ import annotations

from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from nodeagent.telemetry.scheduler import Sampler, Schedule
from nodeagent.telemetry.settings import CollectorSettings as S


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counting:
    """A collector that counts its samples and can be told to fail or to run a hook."""

    def __init__(self, name: str, fail: bool = False) -> None:
        self.name = name
        self.calls = 0
        self.fail = fail
        self.during: Any = None

    def collect(self) -> list[Metric]:
        self.calls += 1
        if self.during is not None:
            self.during()
        if self.fail:
            raise RuntimeError("sensor unplugged")
        return [GaugeMetricFamily(f"test_{self.name}_value", "A test value.", value=self.calls)]


def test_enabled_collectors_are_due_at_once_then_every_interval() -> None:
    schedule = Schedule()
    schedule.configure([S("cpu", True, 1000), S("memory", True, 5000), S("network", False, 1000)], now=0)
    assert schedule.due(0) == ["cpu", "memory"]
    schedule.sampled("cpu", 0)
    schedule.sampled("memory", 0)
    assert schedule.due(0.999) == []
    assert schedule.next_deadline() == 1.0
    assert schedule.due(1.0) == ["cpu"]


def test_cadence_does_not_drift_with_late_wakeups_nor_bursts_after_a_stall() -> None:
    schedule = Schedule()
    schedule.configure([S("cpu", True, 1000)], now=0)
    schedule.sampled("cpu", 0.0)
    schedule.sampled("cpu", 1.05)  # woke 50 ms late: next one stays on the 1 s grid
    assert schedule.next_deadline() == 2.0
    schedule.sampled("cpu", 10.0)  # machine stalled for 8 s: one sample now, not eight
    assert schedule.next_deadline() == 10.0
    assert schedule.due(10.0) == ["cpu"]


def test_retiming_counts_from_the_last_sample_and_disabling_unschedules() -> None:
    schedule = Schedule()
    schedule.configure([S("cpu", True, 60_000)], now=0)
    schedule.sampled("cpu", 0)
    schedule.configure([S("cpu", True, 2000)], now=1.0)
    assert schedule.next_deadline() == 2.0
    schedule.configure([S("cpu", True, 500)], now=1.0)  # already overdue: at once
    assert schedule.next_deadline() == 1.0
    schedule.configure([S("cpu", False, 500)], now=1.0)
    assert schedule.next_deadline() is None and schedule.enabled() == frozenset()


def _names(families: list[Metric]) -> set[str]:
    return {f.name for f in families}


def test_sampler_serves_cached_samples_and_scrapes_do_not_sample() -> None:
    clock, cpu = Clock(), Counting("cpu")
    sampler = Sampler({"cpu": cpu}, [S("cpu", True, 1000)], clock=clock)
    assert _names(sampler.collect()) == {
        "mlsysops_nodeagent_collector_success",
        "mlsysops_nodeagent_collector_duration_seconds",
    }
    assert sampler.sample_due() == 1001.0
    for _ in range(5):
        sampler.collect()
    assert cpu.calls == 1
    assert "test_cpu_value" in _names(sampler.collect())


def test_a_failing_collector_reports_failure_and_no_series_while_others_go_on() -> None:
    clock, good, bad = Clock(), Counting("cpu"), Counting("memory", fail=True)
    sampler = Sampler(
        {"cpu": good, "memory": bad}, [S("cpu", True, 1000), S("memory", True, 1000)], clock=clock
    )
    sampler.sample_due()
    families = {f.name: f for f in sampler.collect()}
    assert "test_cpu_value" in families and "test_memory_value" not in families
    success = {
        s.labels["collector"]: s.value for s in families["mlsysops_nodeagent_collector_success"].samples
    }
    assert success == {"cpu": 1.0, "memory": 0.0}


def test_disabling_drops_series_at_once_even_when_it_happens_during_a_sample() -> None:
    clock, cpu = Clock(), Counting("cpu")
    sampler = Sampler({"cpu": cpu}, [S("cpu", True, 1000)], clock=clock)
    sampler.sample_due()
    assert "test_cpu_value" in _names(sampler.collect())
    sampler.configure([S("cpu", False, 1000)])
    assert "test_cpu_value" not in _names(sampler.collect())
    # re-enabled, then disabled while the sample is being taken: the late result is discarded
    sampler.configure([S("cpu", True, 1000)])
    cpu.during = lambda: sampler.configure([S("cpu", False, 1000)])
    assert sampler.sample_due() is None
    assert "test_cpu_value" not in _names(sampler.collect())


class RecordingEvent:
    """Stands in for the sampler's wake-up Event: records each wait's timeout, never blocks."""

    def __init__(self, clock: Clock, stop_after: int, stopping: Any) -> None:
        self.timeouts: list[float | None] = []
        self._clock, self._stop_after, self._stopping = clock, stop_after, stopping

    def clear(self) -> None:
        pass

    def set(self) -> None:
        pass

    def wait(self, timeout: float | None = None) -> bool:
        self.timeouts.append(timeout)
        if timeout is not None:
            self._clock.now += timeout  # time passes while we sleep
        if len(self.timeouts) >= self._stop_after:
            self._stopping.set()
        return False


def test_the_thread_sleeps_until_the_next_deadline_never_polls() -> None:
    clock, cpu, memory = Clock(), Counting("cpu"), Counting("memory")
    sampler = Sampler(
        {"cpu": cpu, "memory": memory}, [S("cpu", True, 10_000), S("memory", True, 15_000)], clock=clock
    )
    wake = RecordingEvent(clock, stop_after=4, stopping=sampler._stopping)
    sampler._wake = wake  # type: ignore[assignment]
    sampler._run()
    # t=0 both, sleep 10 s; t=10 cpu, sleep 5 s; t=15 memory, sleep 5 s; t=20 cpu, sleep 10 s
    assert wake.timeouts == [10.0, 5.0, 5.0, 10.0]
    assert (cpu.calls, memory.calls) == (3, 2)


def test_with_every_collector_disabled_the_thread_sleeps_without_timeout() -> None:
    clock = Clock()
    sampler = Sampler({"cpu": Counting("cpu")}, [S("cpu", False, 1000)], clock=clock)
    wake = RecordingEvent(clock, stop_after=1, stopping=sampler._stopping)
    sampler._wake = wake  # type: ignore[assignment]
    sampler._run()
    assert wake.timeouts == [None]
