"""Simulated kernel trees: a cpufreq sysfs and a cgroup v2 hierarchy that behave like the kernel.

Machines without cpufreq (VMs) or without a v2 cpu/cpuset/memory hierarchy (this project's CI)
still need to exercise those mechanisms, in tests and in the agent's demo mode. The builders lay
out the same files the kernel shows, with the same value formats; `SimulatedKernelFS` is a HostFS
whose write/mkdir/rmdir enforce the kernel's semantics on those trees, so a mechanism that passes
here relies on no leniency the kernel lacks. The rules, each naming the kernel code it mirrors,
live with their code: cpufreq's in simulated_cpufreq.py, cgroup v2's in simulated_cgroup2.py
(the file primitives both use are in simulated_kernfs.py).
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nodeagent.errors import HostError
from nodeagent.host import simulated_cpufreq
from nodeagent.host.fs import HostFS
from nodeagent.host.simulated_cgroup2 import V2_CONTROLLERS, Cgroup2Rules
from nodeagent.host.simulated_kernfs import CPU_DIR, NODE_DIR, KernelRefusal, write_file


@dataclass(frozen=True)
class CpuFreqSpec:
    """A cpufreq driver as sysfs would show it. `frequencies_khz=None` means a continuous range
    (intel_pstate-like: no scaling_available_frequencies file)."""

    cpus_per_policy: int = 1
    driver: str = "acpi-cpufreq"
    governors: tuple[str, ...] = ("conservative", "ondemand", "userspace", "powersave", "performance")
    governor: str = "ondemand"
    frequencies_khz: tuple[int, ...] | None = (800000, 1200000, 1600000, 2000000, 2400000)
    min_khz: int = 800000  # cpuinfo_min_freq when the range is continuous
    max_khz: int = 2400000  # cpuinfo_max_freq when the range is continuous


@dataclass(frozen=True)
class Cgroup2Spec:
    """A cgroup2 mount and the controllers its root offers."""

    mount: str = "sys/fs/cgroup"
    controllers: tuple[str, ...] = ("cpuset", "cpu", "io", "memory", "pids")


# -- builders -------------------------------------------------------------------------------------


def build_simulated_host(
    root: str | os.PathLike[str],
    *,
    cpus: int = 4,
    numa_nodes: int = 1,
    memory_bytes: int = 8 << 30,
    cpufreq: CpuFreqSpec | None = CpuFreqSpec(),
    cgroup2: Cgroup2Spec | None = Cgroup2Spec(),
) -> SimulatedKernelFS:
    """Lay out a whole simulated node below `root` (CPUs, NUMA nodes, meminfo, mountinfo,
    optionally cpufreq and a cgroup2 mount) and return the file layer that enforces it.

    Idempotent: a tree that exists already is kept as it is (a restarted demo agent finds the
    state it left), so only a fresh directory is laid out.
    """
    base = Path(root)
    if not (base / CPU_DIR / "possible").exists():
        write_file(base / CPU_DIR / "possible", f"0-{cpus - 1}")
        write_file(base / CPU_DIR / "present", f"0-{cpus - 1}")
        write_file(base / CPU_DIR / "online", f"0-{cpus - 1}")
        for cpu in range(cpus):
            (base / CPU_DIR / f"cpu{cpu}").mkdir(parents=True, exist_ok=True)
        nodes = "0" if numa_nodes == 1 else f"0-{numa_nodes - 1}"
        for name in ("possible", "online", "has_memory"):
            write_file(base / NODE_DIR / name, nodes)
        write_file(base / "proc/meminfo", f"MemTotal:       {memory_bytes // 1024} kB\nMemFree: 0 kB")
        if cpufreq is not None:
            build_cpufreq_tree(base, cpus, cpufreq)
        if cgroup2 is not None:
            build_cgroup2_tree(base, cpus, numa_nodes, cgroup2)
    return SimulatedKernelFS(base, cgroup2.mount if cgroup2 else None)


def build_cpufreq_tree(root: Path, cpus: int, spec: CpuFreqSpec) -> None:
    """policyN directories under sys/devices/system/cpu/cpufreq, cpuN/cpufreq symlinks to them."""
    freqs = spec.frequencies_khz
    low, high = (min(freqs), max(freqs)) if freqs else (spec.min_khz, spec.max_khz)
    for first in range(0, cpus, spec.cpus_per_policy):
        members = " ".join(str(c) for c in range(first, min(first + spec.cpus_per_policy, cpus)))
        policy = root / CPU_DIR / "cpufreq" / f"policy{first}"
        files = {
            "affected_cpus": members,
            "related_cpus": members,
            "cpuinfo_min_freq": str(low),
            "cpuinfo_max_freq": str(high),
            "cpuinfo_transition_latency": "10000",
            "scaling_driver": spec.driver,
            "scaling_available_governors": " ".join(spec.governors),
            "scaling_governor": spec.governor,
            "scaling_min_freq": str(low),
            "scaling_max_freq": str(high),
            "scaling_cur_freq": str(low),
            "scaling_setspeed": "<unsupported>",
        }
        if freqs:
            files["scaling_available_frequencies"] = " ".join(str(f) for f in sorted(freqs))
        for name, value in files.items():
            write_file(policy / name, value)
        for cpu in members.split():
            link = root / CPU_DIR / f"cpu{cpu}" / "cpufreq"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(f"../cpufreq/policy{first}")


def build_cgroup2_tree(root: Path, cpus: int, numa_nodes: int, spec: Cgroup2Spec) -> None:
    """The root cgroup of a cgroup2 mount, and the mountinfo line that announces it."""
    top = root / spec.mount
    controllers = [c for c in V2_CONTROLLERS if c in spec.controllers]
    files = {
        "cgroup.controllers": " ".join(controllers),
        "cgroup.subtree_control": "",
        "cgroup.procs": "",
        "cgroup.threads": "",
        "cgroup.stat": "nr_descendants 0\nnr_dying_descendants 0",
        "cgroup.max.depth": "max",
        "cgroup.max.descendants": "max",
        "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0",
    }
    if "cpuset" in controllers:
        files["cpuset.cpus.effective"] = f"0-{cpus - 1}" if cpus > 1 else "0"
        files["cpuset.mems.effective"] = f"0-{numa_nodes - 1}" if numa_nodes > 1 else "0"
    for name, value in files.items():
        write_file(top / name, value)
    mountinfo = root / "proc/self/mountinfo"
    line = f"41 23 0:38 / /{spec.mount} rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate\n"
    mountinfo.parent.mkdir(parents=True, exist_ok=True)
    with open(mountinfo, "a", encoding="ascii") as fh:
        fh.write(line)


class SimulatedKernelFS(HostFS):
    """HostFS over a simulated tree whose writes succeed or fail as the kernel's would.

    Paths outside the simulated cpufreq and cgroup2 trees behave as plain files. A lock
    serialises mutations, as the kernel's cgroup_mutex and policy rwsem do.
    """

    def __init__(self, root: str | os.PathLike[str], cgroup2_mount: str | None = "sys/fs/cgroup") -> None:
        super().__init__(root)
        self._real_root = self.root.resolve()
        top = (self._real_root / cgroup2_mount) if cgroup2_mount else None
        self._cgroup2 = Cgroup2Rules(self._real_root, top) if top is not None else None
        self._lock = threading.RLock()

    def write(self, rel: str, value: str) -> None:
        with self._lock:
            target = self.path(rel).resolve()
            store: Callable[[Path, str], None] | None = None
            if target.parent.parent == self._real_root / CPU_DIR / "cpufreq":
                store = simulated_cpufreq.store
            elif self._cgroup2 is not None and self._cgroup2.contains(target.parent):
                store = self._cgroup2.store
            if store is None:
                super().write(rel, value)
                return
            if not target.is_file():
                raise HostError(rel, f"write {value!r} failed: {os.strerror(errno.ENOENT)}", errno.ENOENT)
            try:
                store(target, value.strip())
            except KernelRefusal as exc:
                raise HostError(rel, f"write {value!r} failed: {exc}", exc.code) from None

    def mkdir(self, rel: str) -> None:
        with self._lock:
            target = self.path(rel)
            parent = target.parent.resolve()
            if self._cgroup2 is None or not self._cgroup2.contains(parent):
                super().mkdir(rel)
                return
            if target.exists():
                return
            if not (parent / "cgroup.procs").is_file():
                raise HostError(rel, f"mkdir failed: {os.strerror(errno.ENOENT)}", errno.ENOENT)
            super().mkdir(rel)
            self._cgroup2.create(target)

    def rmdir(self, rel: str) -> None:
        with self._lock:
            target = self.path(rel)
            if self._cgroup2 is None or not target.is_dir() or not self._cgroup2.contains(target.resolve()):
                super().rmdir(rel)
                return
            try:
                self._cgroup2.remove(target.resolve())
            except KernelRefusal as exc:
                raise HostError(rel, f"rmdir failed: {exc}", exc.code) from None
