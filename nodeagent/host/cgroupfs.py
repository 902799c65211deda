"""Where each cgroup controller lives: v1 hierarchies, a v2 (unified) hierarchy, or both.

The authority is the mount table (proc/self/mountinfo, read through HostFS so a simulated tree
can bring its own): `cgroup` mounts carry their v1 controllers in the super options
("rw,cpu,cpuacct"), a `cgroup2` mount offers what its root's cgroup.controllers lists. A
controller bound to a v1 hierarchy is not available on v2 (the kernel binds each controller to
one hierarchy), which is exactly this project's CI: cpu, cpuset and memory on v1, a cgroup2 mount
at /sys/fs/cgroup/unified offering only hugetlb. Trees without a mount table (fixtures) are
recognised by their files instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nodeagent.host.fs import HostFS

MANAGED = ("cpu", "cpuset", "memory")
"""The controllers the cgroups mechanism configures; a group is created where these live."""

_NOT_CONTROLLERS = frozenset(
    {"rw", "ro", "noprefix", "clone_children", "xattr", "cpuset_v2_mode", "nsdelegate", "favordynmods"}
)
_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy; `path` is relative to the fs root."""

    version: str  # "v1" or "v2"
    path: str
    controllers: frozenset[str]


@dataclass(frozen=True)
class CgroupLayout:
    """The hierarchies below the configured cgroup mount."""

    mount: str
    hierarchies: tuple[Hierarchy, ...]

    def hierarchy_of(self, controller: str) -> Hierarchy | None:
        return next((h for h in self.hierarchies if controller in h.controllers), None)

    @property
    def version(self) -> str:
        """ "v2" (pure unified), "v1", "hybrid" (v1 hierarchies plus a cgroup2 mount) or "none"."""
        versions = {h.version for h in self.hierarchies}
        if not versions:
            return "none"
        if versions == {"v2"}:
            return "v2"
        return "hybrid" if "v2" in versions else "v1"

    def group_hierarchies(self) -> list[Hierarchy]:
        """Where a managed group exists: the unified hierarchy (if any) and every v1 hierarchy
        holding a managed controller, so a workload placed in the group is covered by each."""
        chosen = [h for h in self.hierarchies if h.version == "v2" or h.controllers & set(MANAGED)]
        return sorted(chosen, key=lambda h: h.path)


def discover(fs: HostFS, mount: str) -> CgroupLayout:
    """The layout below `mount` (relative to the fs root), from mountinfo or from the tree."""
    mount = mount.strip("/")
    found = _from_mountinfo(fs, mount) or _from_tree(fs, mount)
    claimed_by_v1 = {c for h in found if h.version == "v1" for c in h.controllers}
    hierarchies = tuple(
        Hierarchy(h.version, h.path, h.controllers - claimed_by_v1) if h.version == "v2" else h for h in found
    )
    return CgroupLayout(mount, tuple(sorted(hierarchies, key=lambda h: h.path)))


def _from_mountinfo(fs: HostFS, mount: str) -> list[Hierarchy]:
    text = fs.read_optional("proc/self/mountinfo") or ""
    found: dict[str, Hierarchy] = {}  # by superblock (major:minor): a bind mount repeats a hierarchy
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        if len(fields) < sep + 4:
            continue
        device, point = fields[2], _unescape(fields[4]).strip("/")
        fstype, options = fields[sep + 1], fields[sep + 3]
        if fstype not in ("cgroup", "cgroup2") or not (point == mount or point.startswith(mount + "/")):
            continue
        if device not in found and fs.is_dir(point):  # the first mount point of a hierarchy wins
            found[device] = _hierarchy(fs, point, fstype, options)
    return list(found.values())


def _from_tree(fs: HostFS, mount: str) -> list[Hierarchy]:
    if not fs.is_dir(mount):
        return []
    if fs.exists(f"{mount}/cgroup.controllers"):
        return [_hierarchy(fs, mount, "cgroup2", "")]
    found = []
    for name in fs.listdir(mount):
        point = f"{mount}/{name}"
        if fs.exists(f"{point}/cgroup.controllers"):
            found.append(_hierarchy(fs, point, "cgroup2", ""))
        elif fs.exists(f"{point}/cgroup.procs") and not fs.path(point).is_symlink():
            found.append(Hierarchy("v1", point, frozenset(name.split(","))))
    return found


def _hierarchy(fs: HostFS, point: str, fstype: str, options: str) -> Hierarchy:
    if fstype == "cgroup2":
        offered = fs.read_optional(f"{point}/cgroup.controllers") or ""
        return Hierarchy("v2", point, frozenset(offered.split()))
    names = {o for o in options.split(",") if o and "=" not in o and o not in _NOT_CONTROLLERS}
    return Hierarchy("v1", point, frozenset(names))


def _unescape(path: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), path)
