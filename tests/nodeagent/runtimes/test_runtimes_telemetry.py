"""The workloads collector against real tasks on the private containerd: a runc task and a
gVisor sandbox each report their own CPU time and memory, a busy one's CPU time grows, and a
stopped one disappears from the next sample."""

from __future__ import annotations

import functools

from mlsysops.testing import wait_for
from nodeagent.host.fs import HostFS
from nodeagent.service.workloads import LABEL, SPEC_EXTENSION, WorkloadService
from nodeagent.telemetry.workloads import WorkloadsCollector, listed_workloads

from .conftest import IMAGE, NAMESPACE

BUSY = ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do :; done"]
PREFIX = "mlsysops_nodeagent_workload_"
IDLE = ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"]


def sample(collector: WorkloadsCollector) -> dict[tuple[str, str, str], float]:
    return {
        (s.name.removeprefix(PREFIX), s.labels["workload"], s.labels["handler"]): s.value
        for family in collector.collect()
        for s in family.samples
    }


def test_each_workload_reports_cpu_and_memory_of_its_own_task_under_runc_and_gvisor(
    service: WorkloadService, workload_name: str
) -> None:
    busy, sandboxed = f"{workload_name}-busy", f"{workload_name}-gvisor"
    collector = WorkloadsCollector(
        HostFS("/"), functools.partial(listed_workloads, service.client, NAMESPACE, LABEL, SPEC_EXTENSION)
    )
    try:
        service.run({"name": busy, "image": IMAGE, "handler": "runc", "args": BUSY})
        service.run({"name": sandboxed, "image": IMAGE, "handler": "runsc", "args": IDLE})
        first = sample(collector)
        assert first[("memory_usage_bytes", busy, "runc")] > 0
        assert first[("memory_usage_bytes", sandboxed, "runsc")] > 0  # the sandbox's sentry and gofer
        assert ("cpu_usage_seconds_total", sandboxed, "runsc") in first
        start = first[("cpu_usage_seconds_total", busy, "runc")]
        wait_for(lambda: sample(collector)[("cpu_usage_seconds_total", busy, "runc")] > start + 0.2, 10)
        service.stop(busy)
        after = sample(collector)
        assert {name for _, name, _ in after} >= {sandboxed}
        assert busy not in {name for _, name, _ in after}
    finally:
        for name in (busy, sandboxed):
            if name in {s.spec.name for s in service.workloads()}:
                service.stop(name)
