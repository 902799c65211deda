"""CPU and memory of each workload the agent runs in containerd, labelled with its name.

The controller's performance view (per app and per component) needs usage per workload, not
per managed cgroup: this collector lists the agent's workloads (one containerd List call, only
when runtimes are enabled) and reads each task's own cgroup (the OCI `cgroupsPath` the agent
gave it, so runc and gVisor sandboxes alike) in every hierarchy that accounts CPU or memory.
The workload name is the only identity label: the controller names workloads
`<app>.<component>.<replica>` and maps them back itself, so the agent needs no notion of apps.

Nothing happens until the first sample: the cgroup layout is discovered then, once. A workload
whose cgroup is gone between the listing and the read (stopped meanwhile) is skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from nodeagent.errors import HostError
from nodeagent.host.cgroupfs import CgroupLayout, Hierarchy, discover
from nodeagent.host.fs import HostFS
from nodeagent.mechanisms.workload_spec import WorkloadSpec, cgroups_path
from nodeagent.telemetry.base import PREFIX
from nodeagent.telemetry.hostfs import parse_stat, to_int

_NS = 1e-9
_US = 1e-6


@dataclass(frozen=True)
class WorkloadCgroup:
    """One workload as the collector reports it."""

    name: str
    cgroup: str  # the task's cgroupsPath, absolute within each hierarchy ("/mlsysops/workloads/x")
    handler: str  # the runtime handler (runc, runsc, ...)


class ContainerRecord(Protocol):
    """The parts of a containerd container record (host.containerd.ContainerInfo) read here."""

    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def extensions(self) -> Mapping[str, bytes]: ...


class ContainerLister(Protocol):
    """containerd's container listing (host.containerd.ContainerdClient.containers)."""

    def containers(self, label: str = "") -> Sequence[ContainerRecord]: ...


def listed_workloads(
    lister: ContainerLister, cgroup_root: str, label: str, extension: str
) -> list[WorkloadCgroup]:
    """The workloads containerd holds (containers carrying `label` and their spec in
    `extension`), with the cgroup each task was created in."""
    found = []
    for record in lister.containers(label):
        raw = record.extensions.get(extension)
        if raw is None:
            continue
        spec = WorkloadSpec.from_json(raw)
        found.append(WorkloadCgroup(spec.name, cgroups_path(spec, cgroup_root), spec.handler))
    return found


class WorkloadsCollector:
    """Per-workload CPU time and memory from the cgroupfs (v1 cpuacct/memory or v2 files)."""

    name = "workloads"

    def __init__(
        self, fs: HostFS, workloads: Callable[[], Sequence[WorkloadCgroup]], mount: str = "sys/fs/cgroup"
    ) -> None:
        self._fs = fs
        self._workloads = workloads
        self._mount = mount
        self._layout: CgroupLayout | None = None  # discovered at the first sample

    def collect(self) -> list[Metric]:
        labels = ["workload", "handler"]
        cpu = CounterMetricFamily(
            PREFIX + "workload_cpu_usage_seconds", "CPU time consumed by the workload's task.", labels=labels
        )
        memory = GaugeMetricFamily(
            PREFIX + "workload_memory_usage_bytes", "Memory charged to the workload's cgroup.", labels=labels
        )
        listed = self._workloads()
        if listed:
            cpu_dirs, memory_dirs = self._hierarchies()
            for workload in listed:
                label = [workload.name, workload.handler]
                if (seconds := self._cpu_seconds(cpu_dirs, workload.cgroup)) is not None:
                    cpu.add_metric(label, seconds)
                if (used := self._memory_bytes(memory_dirs, workload.cgroup)) is not None:
                    memory.add_metric(label, float(used))
        return [cpu, memory]

    def _hierarchies(self) -> tuple[list[Hierarchy], list[Hierarchy]]:
        if self._layout is None:
            self._layout = discover(self._fs, self._mount)
        found = self._layout.hierarchies
        # v1 first: on a hybrid host the unified hierarchy holds no cpu/memory accounting.
        ordered = sorted(found, key=lambda h: h.version != "v1")
        cpu = [h for h in ordered if h.version == "v2" or h.controllers & {"cpuacct", "cpu"}]
        memory = [h for h in ordered if h.version == "v2" or "memory" in h.controllers]
        return cpu, memory

    def _cpu_seconds(self, hierarchies: Sequence[Hierarchy], cgroup: str) -> float | None:
        for h in hierarchies:
            directory = h.path + cgroup
            if (ns := to_int(self._read(f"{directory}/cpuacct.usage"))) is not None:
                return ns * _NS
            if "usage_usec" in (stat := parse_stat(self._read(f"{directory}/cpu.stat"))):
                return stat["usage_usec"] * _US
        return None

    def _memory_bytes(self, hierarchies: Sequence[Hierarchy], cgroup: str) -> int | None:
        for h in hierarchies:
            directory = h.path + cgroup
            for name in ("memory.usage_in_bytes", "memory.current"):
                if (value := to_int(self._read(f"{directory}/{name}"))) is not None:
                    return value
        return None

    def _read(self, rel: str) -> str | None:
        try:
            return self._fs.read_optional(rel)
        except HostError:  # ENODEV and friends on a cgroup being removed right now
            return None
