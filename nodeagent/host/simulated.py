"""Simulated kernel trees: a cpufreq sysfs and a cgroup v2 hierarchy that behave like the kernel.

Machines without cpufreq (VMs) or without a v2 cpu/cpuset/memory hierarchy (this project's CI)
still need to exercise those mechanisms, in tests and in the agent's demo mode. The builders lay
out the same files the kernel shows, with the same value formats; `SimulatedKernelFS` is a HostFS
whose write/mkdir/rmdir enforce the kernel's semantics on those trees, so a mechanism that passes
here relies on no leniency the kernel lacks. Each rule below names the kernel code it mirrors:

cpufreq (drivers/cpufreq/cpufreq.c)
  * scaling_governor: a name from scaling_available_governors, else EINVAL.
  * scaling_min_freq / scaling_max_freq: a decimal outside [cpuinfo_min_freq, cpuinfo_max_freq],
    or one that would make min > max, fails with EINVAL. That is the pre-5.3 kernel for min > max
    (cpufreq_set_policy refused it) and stricter than any kernel for the bounds (they clamp);
    newer kernels store both as freq-QoS requests and clamp silently, so a value read back may
    differ from the one written. Refusing makes every ordering or range mistake visible here
    instead of turning into drift on hardware. An in-range value is resolved to the driver's
    table like __resolve_freq(): min up to the next offered frequency, max down.
  * scaling_setspeed only works under the userspace governor.
  * read-only attributes (cpuinfo_*, scaling_available_*, scaling_cur_freq, affected_cpus ...)
    fail with EACCES, as kernfs does for files without a store method even for root.

cgroup v2 (kernel/cgroup/cgroup.c, cpuset.c, sched/core.c, mm/memcontrol.c)
  * mkdir creates the core interface files plus those of every controller enabled in the
    parent's cgroup.subtree_control; cgroup.controllers lists exactly those.
  * rmdir of a cgroup with children or processes fails with EBUSY.
  * cgroup.subtree_control takes "+ctrl -ctrl": an unknown name is EINVAL, a controller missing
    from cgroup.controllers is ENOENT, enabling in a non-root cgroup that has processes is EBUSY
    ("no internal processes"), disabling one a child still enables is EBUSY. Enabling creates the
    controller's files in every child, disabling removes them.
  * cpu.max "$QUOTA [$PERIOD]" (quota "max" for none, period kept when omitted): period in
    [1000, 1000000] us and quota >= 1000 us, else EINVAL. cpu.weight outside 1..10000 is ERANGE.
  * cpuset.cpus/mems: a malformed list is EINVAL, an id beyond the possible ones ERANGE, one not
    in the root's set EINVAL. Like the kernel on the default hierarchy (validate_change() checks
    "subset of the parent" only on v1) a child may name CPUs its parent lacks:
    cpuset.cpus.effective is then the intersection, or the parent's set when that is empty.
  * memory.max: "max" or bytes (K/M/G/T/P/E suffixes), rounded down to whole pages, read back
    as "max" or bytes; a negative value is EINVAL.
  * read-only files (cgroup.controllers, cgroup.events, *.effective, *.stat, memory.current)
    fail with EACCES.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nodeagent.errors import HostError
from nodeagent.host.fs import HostFS
from nodeagent.mechanisms import cpulist  # pure: the one parser of the kernel's list syntax

CPU_DIR = "sys/devices/system/cpu"
NODE_DIR = "sys/devices/system/node"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PAGE_COUNTER_MAX = (2**63 - 1) // PAGE_SIZE  # LONG_MAX / PAGE_SIZE on 64-bit kernels
MAX_CFS_QUOTA_US = (1 << 44) - 1  # max_cfs_runtime in us (sched/core.c)
V2_CONTROLLERS = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc")  # ssid order


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
        _write(base / CPU_DIR / "possible", f"0-{cpus - 1}")
        _write(base / CPU_DIR / "present", f"0-{cpus - 1}")
        _write(base / CPU_DIR / "online", f"0-{cpus - 1}")
        for cpu in range(cpus):
            (base / CPU_DIR / f"cpu{cpu}").mkdir(parents=True, exist_ok=True)
        nodes = "0" if numa_nodes == 1 else f"0-{numa_nodes - 1}"
        for name in ("possible", "online", "has_memory"):
            _write(base / NODE_DIR / name, nodes)
        _write(base / "proc/meminfo", f"MemTotal:       {memory_bytes // 1024} kB\nMemFree: 0 kB")
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
            _write(policy / name, value)
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
        _write(top / name, value)
    mountinfo = root / "proc/self/mountinfo"
    line = f"41 23 0:38 / /{spec.mount} rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate\n"
    mountinfo.parent.mkdir(parents=True, exist_ok=True)
    with open(mountinfo, "a", encoding="ascii") as fh:
        fh.write(line)


def _write(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n" if value else "", encoding="ascii")


# -- the kernel's write semantics ------------------------------------------------------------------


class KernelRefusal(Exception):
    """What a kernel store method returned: an errno (the simulation's internal signal)."""

    def __init__(self, code: int) -> None:
        super().__init__(os.strerror(code))
        self.code = code


_CORE_FILES = {
    "cgroup.type": "domain",
    "cgroup.procs": "",
    "cgroup.threads": "",
    "cgroup.subtree_control": "",
    "cgroup.events": "populated 0\nfrozen 0",
    "cgroup.freeze": "0",
    "cgroup.max.depth": "max",
    "cgroup.max.descendants": "max",
    "cgroup.stat": "nr_descendants 0\nnr_dying_descendants 0",
    "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0",
}
_CONTROLLER_FILES: dict[str, dict[str, str]] = {
    "cpu": {"cpu.max": "max 100000", "cpu.max.burst": "0", "cpu.weight": "100", "cpu.weight.nice": "0"},
    "cpuset": {
        "cpuset.cpus": "",
        "cpuset.mems": "",
        "cpuset.cpus.effective": "",  # copied from the parent when the files are created
        "cpuset.mems.effective": "",
        "cpuset.cpus.partition": "member",
    },
    "memory": {
        "memory.max": "max",
        "memory.high": "max",
        "memory.low": "0",
        "memory.min": "0",
        "memory.current": "0",
        "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0",
        "memory.stat": "anon 0\nfile 0",
    },
    "io": {"io.max": "", "io.weight": "default 100", "io.stat": ""},
    "pids": {"pids.max": "max", "pids.current": "0"},
    "hugetlb": {"hugetlb.2MB.max": "max", "hugetlb.2MB.current": "0"},
}


_UNMODELLED_WRITABLE = frozenset(
    (
        "cgroup.type",
        "cgroup.threads",
        "cgroup.kill",
        "cpu.max.burst",
        "cpu.weight.nice",
        "io.max",
        "io.weight",
        "cpuset.cpus.partition",
        "hugetlb.2MB.max",
    )
)
"""Writable in the kernel but not needed by any mechanism: accepted as written, not checked."""


class SimulatedKernelFS(HostFS):
    """HostFS over a simulated tree whose writes succeed or fail as the kernel's would.

    Paths outside the simulated cpufreq and cgroup2 trees behave as plain files. A lock
    serialises mutations, as the kernel's cgroup_mutex and policy rwsem do.
    """

    def __init__(self, root: str | os.PathLike[str], cgroup2_mount: str | None = "sys/fs/cgroup") -> None:
        super().__init__(root)
        self._real_root = self.root.resolve()
        self._cgroup_top = (self._real_root / cgroup2_mount) if cgroup2_mount else None
        self._lock = threading.RLock()

    # -- dispatch

    def write(self, rel: str, value: str) -> None:
        with self._lock:
            target = self.path(rel).resolve()
            handler: Callable[[Path, str], None] | None = None
            if target.parent.parent == self._real_root / CPU_DIR / "cpufreq":
                handler = self._cpufreq_store
            elif self._in_cgroup_tree(target.parent):
                handler = self._cgroup_store
            if handler is None:
                super().write(rel, value)
                return
            if not target.is_file():
                raise HostError(rel, f"write {value!r} failed: {os.strerror(errno.ENOENT)}", errno.ENOENT)
            try:
                handler(target, value.strip())
            except KernelRefusal as exc:
                raise HostError(rel, f"write {value!r} failed: {exc}", exc.code) from None

    def mkdir(self, rel: str) -> None:
        with self._lock:
            target = self.path(rel)
            if not self._in_cgroup_tree(target.parent.resolve()):
                super().mkdir(rel)
                return
            if target.exists():
                return
            parent = target.parent.resolve()
            if not (parent / "cgroup.procs").is_file():
                raise HostError(rel, f"mkdir failed: {os.strerror(errno.ENOENT)}", errno.ENOENT)
            super().mkdir(rel)
            for name, value in _CORE_FILES.items():
                _write(target / name, value)
            enabled = self._words(parent / "cgroup.subtree_control")
            _write(target / "cgroup.controllers", " ".join(enabled))
            for controller in enabled:
                self._add_controller_files(target, controller)

    def rmdir(self, rel: str) -> None:
        with self._lock:
            target = self.path(rel)
            if not target.is_dir() or not self._in_cgroup_tree(target.resolve()):
                super().rmdir(rel)
                return
            real = target.resolve()
            busy = real == self._cgroup_top or any(p.is_dir() for p in real.iterdir())
            if busy or self._words(real / "cgroup.procs"):
                raise HostError(rel, f"rmdir failed: {os.strerror(errno.EBUSY)}", errno.EBUSY)
            shutil.rmtree(real)

    @property
    def _top(self) -> Path:
        assert self._cgroup_top is not None, "cgroup files are only handled below the cgroup2 mount"
        return self._cgroup_top

    def _in_cgroup_tree(self, directory: Path) -> bool:
        top = self._cgroup_top
        return top is not None and (directory == top or top in directory.parents)

    # -- cpufreq

    def _cpufreq_store(self, target: Path, value: str) -> None:
        policy, attr = target.parent, target.name
        if attr == "scaling_governor":
            if value not in self._words(policy / "scaling_available_governors"):
                raise KernelRefusal(errno.EINVAL)
            _write(target, value)
        elif attr in ("scaling_min_freq", "scaling_max_freq"):
            _write(target, str(self._resolve_limit(policy, attr, value)))
        elif attr == "scaling_setspeed":
            if _read(policy / "scaling_governor") != "userspace" or not value.isdigit():
                raise KernelRefusal(errno.EINVAL)
            low, high = int(_read(policy / "scaling_min_freq")), int(_read(policy / "scaling_max_freq"))
            _write(policy / "scaling_cur_freq", str(min(max(int(value), low), high)))
            return
        else:
            raise KernelRefusal(errno.EACCES)
        self._settle_frequency(policy)

    def _resolve_limit(self, policy: Path, attr: str, value: str) -> int:
        if not value.isdigit():
            raise KernelRefusal(errno.EINVAL)
        wanted = int(value)
        low, high = int(_read(policy / "cpuinfo_min_freq")), int(_read(policy / "cpuinfo_max_freq"))
        if not low <= wanted <= high:
            raise KernelRefusal(errno.EINVAL)
        table = sorted(int(f) for f in self._words(policy / "scaling_available_frequencies"))
        if table:  # __resolve_freq(): min rounds up to an offered frequency, max rounds down
            if attr == "scaling_min_freq":
                wanted = next(f for f in table if f >= wanted)
            else:
                wanted = max(f for f in table if f <= wanted)
        other = "scaling_max_freq" if attr == "scaling_min_freq" else "scaling_min_freq"
        current_other = int(_read(policy / other))
        new_min, new_max = (wanted, current_other) if attr == "scaling_min_freq" else (current_other, wanted)
        if new_min > new_max:
            raise KernelRefusal(errno.EINVAL)
        return wanted

    def _settle_frequency(self, policy: Path) -> None:
        """scaling_cur_freq follows the governor within [min, max] as the kernel reports it."""
        low, high = int(_read(policy / "scaling_min_freq")), int(_read(policy / "scaling_max_freq"))
        governor = _read(policy / "scaling_governor")
        current = int(_read(policy / "scaling_cur_freq"))
        if governor == "performance":
            current = high
        elif governor == "powersave":
            current = low
        else:
            current = min(max(current, low), high)
        _write(policy / "scaling_cur_freq", str(current))
        if governor != "userspace":
            _write(policy / "scaling_setspeed", "<unsupported>")

    # -- cgroup v2

    def _cgroup_store(self, target: Path, value: str) -> None:
        store = {
            "cgroup.subtree_control": self._store_subtree_control,
            "cgroup.procs": self._store_procs,
            "cpu.max": _store_cpu_max,
            "cpu.weight": _store_cpu_weight,
            "cpuset.cpus": self._store_cpuset,
            "cpuset.mems": self._store_cpuset,
            "memory.max": _store_memory,
            "memory.high": _store_memory,
            "memory.low": _store_memory,
            "memory.min": _store_memory,
            "pids.max": _store_max_or_count,
            "cgroup.max.depth": _store_max_or_count,
            "cgroup.max.descendants": _store_max_or_count,
            "cgroup.freeze": _store_flag,
        }.get(target.name)
        if store is None and target.name in _UNMODELLED_WRITABLE:
            store = _store_verbatim
        if store is None:
            raise KernelRefusal(errno.EACCES)
        store(target, value)

    def _store_subtree_control(self, target: Path, value: str) -> None:
        group = target.parent
        enabled = set(self._words(target))
        available = set(self._words(group / "cgroup.controllers"))
        if any(t[:1] not in "+-" or t[1:] not in V2_CONTROLLERS for t in value.split()):
            raise KernelRefusal(errno.EINVAL)
        changes = [(token[0] == "+", token[1:]) for token in value.split()]
        children = _children(group)
        for enable, name in changes:
            if enable and name not in available:
                raise KernelRefusal(errno.ENOENT)
            if enable and group != self._cgroup_top and self._words(group / "cgroup.procs"):
                raise KernelRefusal(errno.EBUSY)  # no internal processes
            if not enable and any(name in self._words(c / "cgroup.subtree_control") for c in children):
                raise KernelRefusal(errno.EBUSY)
        for enable, name in changes:
            if enable == (name in enabled):
                continue
            for child in children:
                if enable:
                    self._add_controller_files(child, name)
                else:
                    for file in _CONTROLLER_FILES.get(name, {}):
                        (child / file).unlink(missing_ok=True)
            (enabled.add if enable else enabled.discard)(name)
        ordered = " ".join(c for c in V2_CONTROLLERS if c in enabled)
        _write(target, ordered)
        for child in children:
            _write(child / "cgroup.controllers", ordered)

    def _add_controller_files(self, group: Path, controller: str) -> None:
        for name, value in _CONTROLLER_FILES.get(controller, {}).items():
            _write(group / name, value)
        if controller == "cpuset":
            for kind in ("cpus", "mems"):
                _write(group / f"cpuset.{kind}.effective", _read(group.parent / f"cpuset.{kind}.effective"))

    def _store_procs(self, target: Path, value: str) -> None:
        if not value.isdigit() or int(value) == 0:
            raise KernelRefusal(errno.EINVAL)
        group = target.parent
        if group != self._cgroup_top and self._words(group / "cgroup.subtree_control"):
            raise KernelRefusal(errno.EBUSY)  # no internal processes
        for procs in self._top.rglob("cgroup.procs"):
            pids = [p for p in self._words(procs) if p != value]
            if procs == target:
                pids.append(value)
            _write(procs, "\n".join(pids))

    def _store_cpuset(self, target: Path, value: str) -> None:
        kind = "cpus" if target.name == "cpuset.cpus" else "mems"
        sysfs = self._real_root / (CPU_DIR if kind == "cpus" else NODE_DIR)
        possible = _parse_list(_read(sysfs / "possible"))
        allowed = _parse_list(_read(self._top / f"cpuset.{kind}.effective"))  # top_cpuset's set
        ids = _parse_list(value)
        if ids and max(ids) > max(possible):
            raise KernelRefusal(errno.ERANGE)
        if not ids <= allowed:
            raise KernelRefusal(errno.EINVAL)
        _write(target, _format_list(ids))
        self._propagate_effective(target.parent, kind)

    def _propagate_effective(self, group: Path, kind: str) -> None:
        """effective = own ∩ parent's effective, or the parent's when that is empty; downwards."""
        own = _parse_list(_read(group / f"cpuset.{kind}"))
        inherited = _parse_list(_read(group.parent / f"cpuset.{kind}.effective"))
        _write(group / f"cpuset.{kind}.effective", _format_list((own & inherited) or inherited))
        for child in _children(group):
            if (child / f"cpuset.{kind}").is_file():
                self._propagate_effective(child, kind)

    @staticmethod
    def _words(path: Path) -> list[str]:
        return _read(path).split() if path.is_file() else []


def _store_cpu_max(target: Path, value: str) -> None:
    words = value.split()
    if not 1 <= len(words) <= 2:
        raise KernelRefusal(errno.EINVAL)
    _, period = _read(target).split()
    quota = words[0]
    if len(words) == 2:
        period = words[1]
    if not period.isdigit() or not 1000 <= int(period) <= 1_000_000:
        raise KernelRefusal(errno.EINVAL)
    if quota != "max" and (not quota.isdigit() or not 1000 <= int(quota) <= MAX_CFS_QUOTA_US):
        raise KernelRefusal(errno.EINVAL)
    _write(target, f"{quota} {int(period)}")


def _store_cpu_weight(target: Path, value: str) -> None:
    if not value.isdigit():
        raise KernelRefusal(errno.EINVAL)
    if not 1 <= int(value) <= 10000:
        raise KernelRefusal(errno.ERANGE)
    _write(target, str(int(value)))


def _store_memory(target: Path, value: str) -> None:
    """page_counter_memparse(): "max" or memparse() bytes, kept in whole pages."""
    if value == "max":
        pages = PAGE_COUNTER_MAX
    else:
        match = re.fullmatch(r"(0[xX][0-9a-fA-F]+|\d+)([KkMmGgTtPpEe]?)", value)
        if match is None:
            raise KernelRefusal(errno.EINVAL)
        shift = 10 * (" KMGTPE".index(match.group(2).upper()) if match.group(2) else 0)
        pages = min((int(match.group(1), 0) << shift) // PAGE_SIZE, PAGE_COUNTER_MAX)
    _write(target, "max" if pages == PAGE_COUNTER_MAX else str(pages * PAGE_SIZE))


def _store_max_or_count(target: Path, value: str) -> None:
    if value != "max" and not value.isdigit():
        raise KernelRefusal(errno.EINVAL)
    _write(target, value)


def _store_flag(target: Path, value: str) -> None:
    if value not in ("0", "1"):
        raise KernelRefusal(errno.EINVAL)
    _write(target, value)


def _store_verbatim(target: Path, value: str) -> None:
    _write(target, value)


def _children(group: Path) -> list[Path]:
    return sorted(p for p in group.iterdir() if p.is_dir())


def _read(path: Path) -> str:
    return path.read_text(encoding="ascii").strip()


def _parse_list(text: str) -> frozenset[int]:
    try:
        return cpulist.parse(text)
    except cpulist.CpuListError:
        raise KernelRefusal(errno.EINVAL) from None


def _format_list(ids: frozenset[int]) -> str:
    return cpulist.format(ids)
