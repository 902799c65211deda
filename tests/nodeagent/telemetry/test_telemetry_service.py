"""Telemetry end to end in-process: live on/off and re-timing, /metrics over HTTP, agent metrics."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric

from mlsysops.testing import wait_for
from nodeagent.errors import InvalidSpec
from nodeagent.host.fs import HostFS
from nodeagent.telemetry import DEFAULT_SETTINGS, AgentMetrics, CollectorSettings, Telemetry
from nodeagent.telemetry.settings import COLLECTOR_NAMES


class Ticking:
    """Counts samples (thread-safely) and exports the count, so a scrape shows fresh samples."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self.calls = 0

    def collect(self) -> list[Metric]:
        with self._lock:
            self.calls += 1
            return [CounterMetricFamily(f"test_{self.name}_samples", "Samples taken.", value=self.calls)]


@pytest.fixture
def telemetry(tmp_path: Any) -> Iterator[tuple[Telemetry, dict[str, Ticking], CollectorRegistry]]:
    registry = CollectorRegistry()
    collectors = {name: Ticking(name) for name in COLLECTOR_NAMES}
    slow = [CollectorSettings(name, name == "cpu", 3_600_000) for name in COLLECTOR_NAMES]
    tel = Telemetry(
        registry=registry, fs=HostFS(tmp_path), cgroup_targets=list, settings=slow, collectors=collectors
    )
    tel.start()
    try:
        yield tel, collectors, registry
    finally:
        tel.stop()


def exposed(tel: Telemetry) -> str:
    return tel.exposition().decode()


def test_start_samples_enabled_collectors_once_and_not_disabled_ones(telemetry: Any) -> None:
    tel, collectors, _ = telemetry
    wait_for(lambda: "test_cpu_samples_total 1.0" in exposed(tel))
    assert collectors["memory"].calls == 0
    assert "test_memory_samples" not in exposed(tel)


def test_enabling_live_samples_at_once_and_disabling_removes_the_series(telemetry: Any) -> None:
    tel, _, _ = telemetry
    new = tel.configure([CollectorSettings("memory", True, 3_600_000)])
    assert CollectorSettings("memory", True, 3_600_000) in new and tel.settings() == new
    wait_for(lambda: "test_memory_samples_total 1.0" in exposed(tel))
    tel.configure([CollectorSettings("memory", False, 3_600_000)])
    text = exposed(tel)
    assert "test_memory_samples" not in text and 'collector="memory"' not in text
    assert "test_cpu_samples" in text


def test_retiming_live_changes_the_sampling_rate(telemetry: Any) -> None:
    tel, collectors, _ = telemetry
    wait_for(lambda: collectors["cpu"].calls == 1)
    tel.configure([CollectorSettings("cpu", True, 100)])  # from once an hour to 10 Hz
    wait_for(lambda: collectors["cpu"].calls >= 4)
    tel.configure([CollectorSettings("cpu", True, 3_600_000)])
    calls = collectors["cpu"].calls
    # Enabling memory proves the sampler went round its loop after the change; by then cpu,
    # back to hourly, took at most the one sample that was already in flight.
    tel.configure([CollectorSettings("memory", True, 3_600_000)])
    wait_for(lambda: collectors["memory"].calls == 1)
    assert collectors["cpu"].calls <= calls + 1


def test_a_bad_update_changes_nothing(telemetry: Any) -> None:
    tel, _, _ = telemetry
    before = tel.settings()
    with pytest.raises(InvalidSpec) as err:
        tel.configure([CollectorSettings("memory", True, 1000), CollectorSettings("cpu", True, 50)])
    assert err.value.field == "collectors[1].interval_ms"
    assert tel.settings() == before
    assert "test_memory_samples" not in exposed(tel)


def test_bad_initial_settings_are_rejected_with_the_field(tmp_path: Any) -> None:
    with pytest.raises(InvalidSpec) as err:
        Telemetry(
            registry=CollectorRegistry(),
            fs=HostFS(tmp_path),
            cgroup_targets=list,
            settings=[CollectorSettings("disk", True, 1000)],
        )
    assert err.value.field == "collectors[0].name"


def test_settings_default_to_defaults_for_unlisted_collectors(tmp_path: Any) -> None:
    tel = Telemetry(
        registry=CollectorRegistry(),
        fs=HostFS(tmp_path),
        cgroup_targets=list,
        settings=[CollectorSettings("cpu", False, 1000)],
    )
    assert tel.settings() == [CollectorSettings("cpu", False, 1000), *DEFAULT_SETTINGS[1:]]


def test_agent_switch_hides_agent_metrics_which_keep_counting(telemetry: Any) -> None:
    tel, _, registry = telemetry
    tel.configure([CollectorSettings("agent", True, 3_600_000)])
    metrics = AgentMetrics(registry)
    metrics.observe_apply(0.0015, 3, dry_run=False, outcome="ok")
    metrics.observe_apply(0.0001, 9, dry_run=True, outcome="ok")
    metrics.count_error("host")
    text = exposed(tel)
    assert "mlsysops_nodeagent_writes_total 3.0" in text  # dry runs write nothing
    assert (
        'mlsysops_nodeagent_apply_duration_seconds_bucket{dry_run="false",le="0.002",outcome="ok"} 1.0'
        in text
    )
    tel.configure([CollectorSettings("agent", False, 15_000)])
    metrics.observe_apply(0.001, 2, dry_run=False, outcome="ok")
    assert "mlsysops_nodeagent_writes" not in exposed(tel)
    assert "mlsysops_nodeagent_errors" not in exposed(tel)
    tel.configure([CollectorSettings("agent", True, 15_000)])
    assert "mlsysops_nodeagent_writes_total 5.0" in exposed(tel)


def test_agent_metrics_reject_an_unknown_outcome(telemetry: Any) -> None:
    _, _, registry = telemetry
    with pytest.raises(ValueError, match="outcome"):
        AgentMetrics(registry).observe_apply(0.1, 1, dry_run=False, outcome="great")


def test_metrics_endpoint_serves_the_cache_over_http(telemetry: Any) -> None:
    tel, _, _ = telemetry
    url = tel.serve_http("127.0.0.1", 0)
    assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
    assert tel.serve_http("127.0.0.1", 0) == url  # idempotent
    wait_for(lambda: "test_cpu_samples_total" in exposed(tel))
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = resp.read().decode()
        assert resp.headers["Content-Type"].startswith("text/plain")
    assert "test_cpu_samples_total 1.0" in body
    with urllib.request.urlopen(url + "?name[]=test_cpu_samples_total", timeout=5) as resp:
        only = resp.read().decode()
    assert "test_cpu_samples_total" in only and "collector_success" not in only


def test_stop_ends_the_sampler_thread_and_the_server(tmp_path: Any) -> None:
    tel = Telemetry(registry=CollectorRegistry(), fs=HostFS(tmp_path), cgroup_targets=list, settings=[])
    before = set(threading.enumerate())
    tel.start()
    url = tel.serve_http("127.0.0.1", 0)
    tel.stop()
    assert set(threading.enumerate()) <= before
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)


def test_production_collectors_read_the_given_trees(host_tree: Any, tmp_path: Any) -> None:
    fs, _ = host_tree
    targets = ["sys/fs/cgroup/unified/mlsysops/web"]
    names = ("cpu", "memory", "network", "agent", "cgroups", "cpufreq", "workloads")
    tel = Telemetry(
        registry=CollectorRegistry(),
        fs=HostFS(tmp_path / "empty"),
        cgroup_targets=lambda: targets,
        settings=[],
        cpufreq_fs=fs,
    )
    tel.start()
    try:
        # every collector sampled once (the sampler takes the due ones in name order)
        wait_for(lambda: all(f'success{{collector="{n}"}}'.encode() in tel.exposition() for n in names))
        text = exposed(tel)
    finally:
        tel.stop()
    assert 'mlsysops_nodeagent_cpu_scaling_frequency_hertz{cpu="0"} 1.2e+09' in text  # the cpufreq tree
    assert "mlsysops_nodeagent_cgroup_memory_usage_bytes{" not in text  # the (empty) main tree
    for name in names:
        assert f'mlsysops_nodeagent_collector_success{{collector="{name}"}} 1.0' in text
    assert "mlsysops_nodeagent_process_resident_memory_bytes" in text
