"""Every exported family follows the Prometheus naming conventions, checked two ways: a pure
rule check over the real collectors' output, and `promtool check metrics` when installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

from nodeagent.telemetry import AgentMetrics
from nodeagent.telemetry.hostfs import CgroupsCollector, CpuFreqCollector
from nodeagent.telemetry.scheduler import Sampler
from nodeagent.telemetry.settings import DEFAULT_SETTINGS
from nodeagent.telemetry.system import AgentProcessCollector, CpuCollector, MemoryCollector, NetworkCollector

TARGETS = [
    "sys/fs/cgroup/cpu/mlsysops/app",
    "sys/fs/cgroup/cpuacct/mlsysops/app",
    "sys/fs/cgroup/memory/mlsysops/app",
    "sys/fs/cgroup/unified/mlsysops/web",
]
UNIT_SUFFIXES = ("_seconds", "_bytes", "_hertz")
NOT_BASE_UNITS = re.compile(r"(milli|micro|nano|kilo|mega|giga)|_(ms|us|ns|kb|mb|khz|mhz|percent)(_|$)")


@pytest.fixture
def full_registry(host_tree: Any, fake_system: Any, fake_process: Any) -> CollectorRegistry:
    """Every collector (fixture host, fake psutil) sampled once, plus populated agent metrics."""
    fs, _ = host_tree
    registry = CollectorRegistry()
    collectors = {
        "cpu": CpuCollector(fake_system),
        "memory": MemoryCollector(fake_system),
        "network": NetworkCollector(fake_system),
        "cgroups": CgroupsCollector(fs, lambda: TARGETS),
        "cpufreq": CpuFreqCollector(fs),
        "agent": AgentProcessCollector(fake_process),
    }
    sampler = Sampler(collectors, DEFAULT_SETTINGS)
    sampler.sample_due()
    registry.register(sampler)
    metrics = AgentMetrics(registry)
    metrics.observe_apply(0.0012, 4, dry_run=False, outcome="ok")
    metrics.observe_apply(0.0003, 0, dry_run=True, outcome="invalid")
    metrics.set_drift("cgroups", 2)
    metrics.count_drift_event("cgroups")
    metrics.count_error("host")
    return registry


def _families(registry: CollectorRegistry) -> list[Metric]:
    return list(registry.collect())


def test_every_family_is_prefixed_documented_and_has_samples(full_registry: CollectorRegistry) -> None:
    families = _families(full_registry)
    names = [f.name for f in families]
    assert len(names) == len(set(names)), "duplicate families"
    assert len(families) > 30
    for family in families:
        assert family.name.startswith("mlsysops_nodeagent_"), family.name
        assert family.documentation.strip(), f"{family.name} has no HELP"
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", family.name), family.name
        assert family.samples, f"{family.name} exported no sample"


def test_counters_end_in_total_and_only_counters_do(full_registry: CollectorRegistry) -> None:
    for family in _families(full_registry):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            if family.type == "counter":
                assert sample.name == family.name + "_total", sample.name
            else:
                assert not sample.name.endswith("_total"), sample.name


def test_units_are_base_units_spelled_as_a_suffix(full_registry: CollectorRegistry) -> None:
    for family in _families(full_registry):
        assert not NOT_BASE_UNITS.search(family.name), f"{family.name}: not a base unit"
        for unit in ("seconds", "bytes", "hertz"):
            if unit in family.name:
                assert family.name.endswith("_" + unit), f"{family.name}: unit must be the suffix"


def test_expected_units_are_present(full_registry: CollectorRegistry) -> None:
    names = {f.name for f in _families(full_registry)}
    assert {
        "mlsysops_nodeagent_apply_duration_seconds",
        "mlsysops_nodeagent_writes",
        "mlsysops_nodeagent_drifted_knobs",
        "mlsysops_nodeagent_drift_events",
        "mlsysops_nodeagent_errors",
        "mlsysops_nodeagent_cgroup_cpu_usage_seconds",
        "mlsysops_nodeagent_cgroup_memory_usage_bytes",
        "mlsysops_nodeagent_cpu_scaling_frequency_hertz",
        "mlsysops_nodeagent_cpu_seconds",
        "mlsysops_nodeagent_memory_available_bytes",
        "mlsysops_nodeagent_network_receive_bytes",
    } <= names
    assert sum(name.endswith(UNIT_SUFFIXES) for name in names) >= 15


def test_promtool_check_metrics_is_clean(full_registry: CollectorRegistry) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package 'prometheus', see .ci/setup)")
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=generate_latest(full_registry),
        capture_output=True,
        timeout=60,
        check=False,
    )
    report = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, report
    assert "All checks passed" in report or report.strip() == "", report
