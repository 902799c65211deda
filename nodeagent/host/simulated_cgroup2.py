"""cgroup v2's write semantics, as the simulated kernel applies them (kernel/cgroup/cgroup.c,
cpuset.c, sched/core.c, mm/memcontrol.c).

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
from pathlib import Path

from nodeagent.host.simulated_kernfs import (
    CPU_DIR,
    NODE_DIR,
    KernelRefusal,
    children,
    format_list,
    parse_list,
    read_file,
    words,
    write_file,
)

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PAGE_COUNTER_MAX = (2**63 - 1) // PAGE_SIZE  # LONG_MAX / PAGE_SIZE on 64-bit kernels
MAX_CFS_QUOTA_US = (1 << 44) - 1  # max_cfs_runtime in us (sched/core.c)
V2_CONTROLLERS = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc")  # ssid order

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


class Cgroup2Rules:
    """The store, mkdir and rmdir semantics of one simulated cgroup2 mount.

    `top` is the mount's root cgroup, `real_root` the simulated node's root (whose sysfs says
    which CPUs and NUMA nodes are possible). Callers hold the lock that serialises mutations.
    """

    def __init__(self, real_root: Path, top: Path) -> None:
        self._real_root = real_root
        self._top = top

    def contains(self, directory: Path) -> bool:
        return directory == self._top or self._top in directory.parents

    def create(self, group: Path) -> None:
        """The files of a new cgroup (its directory exists): core files, and those of every
        controller its parent enables for its children."""
        for name, value in _CORE_FILES.items():
            write_file(group / name, value)
        enabled = words(group.parent / "cgroup.subtree_control")
        write_file(group / "cgroup.controllers", " ".join(enabled))
        for controller in enabled:
            self.add_controller_files(group, controller)

    def remove(self, group: Path) -> None:
        """rmdir: EBUSY for the root, a cgroup with children, or one with processes."""
        busy = group == self._top or any(p.is_dir() for p in group.iterdir())
        if busy or words(group / "cgroup.procs"):
            raise KernelRefusal(errno.EBUSY)
        shutil.rmtree(group)

    def store(self, target: Path, value: str) -> None:
        """Write `value` to the cgroup file `target` as the kernel would, or KernelRefusal."""
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
        enabled = set(words(target))
        available = set(words(group / "cgroup.controllers"))
        if any(t[:1] not in "+-" or t[1:] not in V2_CONTROLLERS for t in value.split()):
            raise KernelRefusal(errno.EINVAL)
        changes = [(token[0] == "+", token[1:]) for token in value.split()]
        subgroups = children(group)
        for enable, name in changes:
            if enable and name not in available:
                raise KernelRefusal(errno.ENOENT)
            if enable and group != self._top and words(group / "cgroup.procs"):
                raise KernelRefusal(errno.EBUSY)  # no internal processes
            if not enable and any(name in words(c / "cgroup.subtree_control") for c in subgroups):
                raise KernelRefusal(errno.EBUSY)
        for enable, name in changes:
            if enable == (name in enabled):
                continue
            for child in subgroups:
                if enable:
                    self.add_controller_files(child, name)
                else:
                    for file in _CONTROLLER_FILES.get(name, {}):
                        (child / file).unlink(missing_ok=True)
            (enabled.add if enable else enabled.discard)(name)
        ordered = " ".join(c for c in V2_CONTROLLERS if c in enabled)
        write_file(target, ordered)
        for child in subgroups:
            write_file(child / "cgroup.controllers", ordered)

    def add_controller_files(self, group: Path, controller: str) -> None:
        for name, value in _CONTROLLER_FILES.get(controller, {}).items():
            write_file(group / name, value)
        if controller == "cpuset":
            for kind in ("cpus", "mems"):
                inherited = read_file(group.parent / f"cpuset.{kind}.effective")
                write_file(group / f"cpuset.{kind}.effective", inherited)

    def _store_procs(self, target: Path, value: str) -> None:
        if not value.isdigit() or int(value) == 0:
            raise KernelRefusal(errno.EINVAL)
        group = target.parent
        if group != self._top and words(group / "cgroup.subtree_control"):
            raise KernelRefusal(errno.EBUSY)  # no internal processes
        for procs in self._top.rglob("cgroup.procs"):
            pids = [p for p in words(procs) if p != value]
            if procs == target:
                pids.append(value)
            write_file(procs, "\n".join(pids))

    def _store_cpuset(self, target: Path, value: str) -> None:
        kind = "cpus" if target.name == "cpuset.cpus" else "mems"
        sysfs = self._real_root / (CPU_DIR if kind == "cpus" else NODE_DIR)
        possible = parse_list(read_file(sysfs / "possible"))
        allowed = parse_list(read_file(self._top / f"cpuset.{kind}.effective"))  # top_cpuset's set
        ids = parse_list(value)
        if ids and max(ids) > max(possible):
            raise KernelRefusal(errno.ERANGE)
        if not ids <= allowed:
            raise KernelRefusal(errno.EINVAL)
        write_file(target, format_list(ids))
        self._propagate_effective(target.parent, kind)

    def _propagate_effective(self, group: Path, kind: str) -> None:
        """effective = own ∩ parent's effective, or the parent's when that is empty; downwards."""
        own = parse_list(read_file(group / f"cpuset.{kind}"))
        inherited = parse_list(read_file(group.parent / f"cpuset.{kind}.effective"))
        write_file(group / f"cpuset.{kind}.effective", format_list((own & inherited) or inherited))
        for child in children(group):
            if (child / f"cpuset.{kind}").is_file():
                self._propagate_effective(child, kind)


def _store_cpu_max(target: Path, value: str) -> None:
    fields = value.split()
    if not 1 <= len(fields) <= 2:
        raise KernelRefusal(errno.EINVAL)
    _, period = read_file(target).split()
    quota = fields[0]
    if len(fields) == 2:
        period = fields[1]
    if not period.isdigit() or not 1000 <= int(period) <= 1_000_000:
        raise KernelRefusal(errno.EINVAL)
    if quota != "max" and (not quota.isdigit() or not 1000 <= int(quota) <= MAX_CFS_QUOTA_US):
        raise KernelRefusal(errno.EINVAL)
    write_file(target, f"{quota} {int(period)}")


def _store_cpu_weight(target: Path, value: str) -> None:
    if not value.isdigit():
        raise KernelRefusal(errno.EINVAL)
    if not 1 <= int(value) <= 10000:
        raise KernelRefusal(errno.ERANGE)
    write_file(target, str(int(value)))


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
    write_file(target, "max" if pages == PAGE_COUNTER_MAX else str(pages * PAGE_SIZE))


def _store_max_or_count(target: Path, value: str) -> None:
    if value != "max" and not value.isdigit():
        raise KernelRefusal(errno.EINVAL)
    write_file(target, value)


def _store_flag(target: Path, value: str) -> None:
    if value not in ("0", "1"):
        raise KernelRefusal(errno.EINVAL)
    write_file(target, value)


def _store_verbatim(target: Path, value: str) -> None:
    write_file(target, value)
