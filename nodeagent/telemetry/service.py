"""Telemetry as the agent sees it: build the collectors, schedule them, serve /metrics.

This is the only place that knows the concrete collectors; the agent's bootstrap hands in the
registry, the host file layer and a callable listing the cgroups it manages.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

import psutil
from prometheus_client.registry import CollectorRegistry

from nodeagent.errors import InvalidSpec
from nodeagent.host.fs import HostFS
from nodeagent.telemetry.agent import AGENT_FAMILIES
from nodeagent.telemetry.base import Collector
from nodeagent.telemetry.exposition import ExposedView, MetricsServer
from nodeagent.telemetry.hostfs import CgroupsCollector, CpuFreqCollector
from nodeagent.telemetry.scheduler import Sampler
from nodeagent.telemetry.settings import DEFAULT_SETTINGS, CollectorSettings, merge_settings
from nodeagent.telemetry.system import (
    AgentProcessCollector,
    CpuCollector,
    MemoryCollector,
    NetworkCollector,
)
from nodeagent.telemetry.workloads import WorkloadCgroup, WorkloadsCollector


def default_collectors(
    fs: HostFS,
    cgroup_targets: Callable[[], Sequence[str]],
    cpufreq_fs: HostFS | None = None,
    workloads: Callable[[], Sequence[WorkloadCgroup]] = list,
) -> dict[str, Collector]:
    """The production collectors: psutil for cpu/memory/network/process, HostFS for the rest.

    Workloads are real containerd tasks even on a simulated node, so their cgroups are read
    from the real cgroupfs (root "/"), not from `fs`."""
    return {
        "cpu": CpuCollector(psutil),
        "memory": MemoryCollector(psutil),
        "network": NetworkCollector(psutil),
        "cgroups": CgroupsCollector(fs, cgroup_targets),
        "cpufreq": CpuFreqCollector(cpufreq_fs or fs),
        "agent": AgentProcessCollector(psutil.Process()),
        "workloads": WorkloadsCollector(HostFS("/"), workloads),
    }


class Telemetry:
    """Collectors switched on/off and re-timed live, sampled by one thread, served on /metrics.

    `settings` are applied over DEFAULT_SETTINGS (so a config may list only what it changes);
    a bad one raises InvalidSpec like configure() does. `cpufreq_fs` is the tree the cpufreq
    mechanism uses when it differs from `fs` (a simulated cpufreq on a machine without one);
    `workloads` lists the workloads the agent runs (none without runtimes); `collectors`
    replaces the production collectors (tests).
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry,
        fs: HostFS,
        cgroup_targets: Callable[[], Sequence[str]],
        settings: Sequence[CollectorSettings],
        cpufreq_fs: HostFS | None = None,
        workloads: Callable[[], Sequence[WorkloadCgroup]] = list,
        collectors: Mapping[str, Collector] | None = None,
    ) -> None:
        self._settings = merge_settings(DEFAULT_SETTINGS, settings)
        self._lock = threading.Lock()
        if collectors is None:
            collectors = default_collectors(fs, cgroup_targets, cpufreq_fs, workloads)
        self._sampler = Sampler(collectors, self._settings)
        registry.register(self._sampler)
        self._view = ExposedView(registry, self._hidden)
        self._server: MetricsServer | None = None

    def start(self) -> None:
        self._sampler.start()

    def stop(self) -> None:
        self._sampler.stop()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def settings(self) -> list[CollectorSettings]:
        with self._lock:
            return list(self._settings)

    def configure(self, updates: Sequence[CollectorSettings]) -> list[CollectorSettings]:
        """Change the listed collectors live; all-or-nothing (InvalidSpec names the field)."""
        with self._lock:
            self._settings = merge_settings(self._settings, updates)
            self._sampler.configure(self._settings)
            return list(self._settings)

    def serve_http(self, host: str, port: int) -> str:
        """Start /metrics (port 0 picks a free port) and return its URL; idempotent."""
        if self._server is None:
            server = MetricsServer(self._view, host, port)
            try:
                server.start()
            except OSError as exc:
                raise InvalidSpec("telemetry.listen", f"cannot listen on {host}:{port}: {exc}") from exc
            self._server = server
        return self._server.url

    def metrics_url(self) -> str:
        """Where /metrics is served; "" while it is not."""
        return "" if self._server is None else self._server.url

    def exposition(self) -> bytes:
        """What a scrape of /metrics returns right now (without HTTP)."""
        return self._view.exposition()

    def _hidden(self) -> frozenset[str]:
        agent_enabled = any(s.name == "agent" and s.enabled for s in self.settings())
        return frozenset() if agent_enabled else AGENT_FAMILIES
