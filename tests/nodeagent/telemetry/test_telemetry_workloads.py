"""The workloads collector: per-workload CPU and memory from each task's own cgroup, v1 and v2,
over fixture trees laid out as the kernel does; the workload listing from containerd records."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodeagent.host.fs import HostFS
from nodeagent.mechanisms.workload_spec import WorkloadSpec
from nodeagent.telemetry.workloads import WorkloadCgroup, WorkloadsCollector, listed_workloads

V1 = {
    "sys/fs/cgroup/cpu,cpuacct/mlsysops/workloads/shop.web.0/cpuacct.usage": "2500000000",
    "sys/fs/cgroup/cpu,cpuacct/mlsysops/workloads/shop.web.0/cgroup.procs": "",
    "sys/fs/cgroup/cpu,cpuacct/cgroup.procs": "",
    "sys/fs/cgroup/memory/mlsysops/workloads/shop.web.0/memory.usage_in_bytes": "1048576",
    "sys/fs/cgroup/memory/cgroup.procs": "",
}
V2 = {
    "sys/fs/cgroup/cgroup.controllers": "cpu memory",
    "sys/fs/cgroup/mlsysops/apps/shop.db.0/cpu.stat": "usage_usec 750000\nuser_usec 500000",
    "sys/fs/cgroup/mlsysops/apps/shop.db.0/memory.current": "2097152",
}


def write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content + "\n")


def collect(tree: Path, workloads: list[WorkloadCgroup]) -> dict[tuple[str, str], float]:
    families = WorkloadsCollector(HostFS(tree), lambda: workloads).collect()
    return {(s.name, s.labels["workload"]): s.value for f in families for s in f.samples}


def test_v1_cpuacct_and_memory_of_each_workload_labelled_with_name_and_handler(tmp_path: Path) -> None:
    write_tree(tmp_path, V1)
    families = WorkloadsCollector(
        HostFS(tmp_path), lambda: [WorkloadCgroup("shop.web.0", "/mlsysops/workloads/shop.web.0", "runsc")]
    ).collect()
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}
    labels = (("handler", "runsc"), ("workload", "shop.web.0"))
    assert got == {
        ("mlsysops_nodeagent_workload_cpu_usage_seconds_total", labels): 2.5,
        ("mlsysops_nodeagent_workload_memory_usage_bytes", labels): 1048576.0,
    }


def test_v2_cpu_stat_and_memory_current(tmp_path: Path) -> None:
    write_tree(tmp_path, V2)
    got = collect(tmp_path, [WorkloadCgroup("shop.db.0", "/mlsysops/apps/shop.db.0", "runc")])
    assert got == {
        ("mlsysops_nodeagent_workload_cpu_usage_seconds_total", "shop.db.0"): 0.75,
        ("mlsysops_nodeagent_workload_memory_usage_bytes", "shop.db.0"): 2097152.0,
    }


def test_a_workload_whose_cgroup_is_gone_is_skipped_and_the_others_reported(tmp_path: Path) -> None:
    write_tree(tmp_path, V1)
    got = collect(
        tmp_path,
        [
            WorkloadCgroup("gone.x.0", "/mlsysops/workloads/gone.x.0", "runc"),
            WorkloadCgroup("shop.web.0", "/mlsysops/workloads/shop.web.0", "runc"),
        ],
    )
    assert {name for _, name in got} == {"shop.web.0"}


def test_no_workloads_reads_nothing_not_even_the_mount_table(tmp_path: Path) -> None:
    collector = WorkloadsCollector(HostFS(tmp_path / "absent"), list)
    assert [list(f.samples) for f in collector.collect()] == [[], []]


@dataclass
class Record:
    labels: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, bytes] = field(default_factory=dict)


class Lister:
    def __init__(self, records: list[Record]) -> None:
        self.records = records
        self.asked: list[str] = []

    def containers(self, label: str = "") -> list[Any]:
        self.asked.append(label)
        return list(self.records)


def test_listed_workloads_come_from_the_stored_specs_with_the_tasks_cgroup() -> None:
    in_apps = WorkloadSpec("shop.db.0", "img", "runsc", ("sh",), cgroup="apps")
    default = WorkloadSpec("shop.web.0", "img", "runc", ("sh",))
    lister = Lister(
        [
            Record(extensions={"workload-spec": in_apps.to_json()}),
            Record(extensions={"workload-spec": default.to_json()}),
            Record(),  # a probe container: no spec
        ]
    )
    assert listed_workloads(lister, "mlsysops", "mlsysops.eu/workload", "workload-spec") == [
        WorkloadCgroup("shop.db.0", "/mlsysops/apps/shop.db.0", "runsc"),
        WorkloadCgroup("shop.web.0", "/mlsysops/workloads/shop.web.0", "runc"),
    ]
    assert lister.asked == ["mlsysops.eu/workload"]
