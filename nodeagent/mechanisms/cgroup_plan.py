"""Turning validated groups into desired cgroup knobs, checked against the hierarchy as planned.

`CgroupView` reads the cgroup mount (keys are relative to it); `Planner` fills the desired map
group by group, parents first, so a child is checked against its parent's *planned* cpuset, and
finally checks the rules cgroup v1 enforces across a hierarchy (cgroup_v1rules.py) on the plan
as a whole. Nothing here writes.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise

from nodeagent.errors import HostError, InvalidSpec, Unsupported
from nodeagent.host import cpulist
from nodeagent.host.cgroupfs import CgroupLayout, Hierarchy
from nodeagent.host.fs import HostFS
from nodeagent.mechanisms import cgroup_v1rules
from nodeagent.mechanisms.base import Value, Write
from nodeagent.mechanisms.cgroup_keys import (
    DIR_PRESENT,
    ENABLED,
    CgroupKey,
    dir_key,
    file_key,
    parse_key,
    toggle_key,
)
from nodeagent.mechanisms.cgroup_knobs import DEFAULT_PERIOD_US, EFFECTIVE, FIELDS, FILES


@dataclass(frozen=True)
class Group:
    """One validated entry of `groups`: where it came from, its path, its canonical values."""

    where: str
    parts: tuple[str, ...]
    values: Mapping[str, str]


def join(*parts: str) -> str:
    return "/".join([p for p in parts if p])  # a list: str.join makes one from a generator anyway


def hierarchy_top(hierarchy: Hierarchy, mount: str) -> str:
    """The hierarchy's root directory relative to the mount ("" for a pure v2 mount)."""
    return hierarchy.path[len(mount) :].strip("/")


class CgroupView:
    """Reads below the cgroup mount; directories are given relative to it."""

    def __init__(self, fs: HostFS, mount: str) -> None:
        self.fs = fs
        self.mount = mount
        # (base, rel) pairs already proven to resolve inside base. A proof stays valid: cgroupfs
        # cannot hold symlinks (kernfs refuses them), and other trees (tests, demo) are ours.
        self._proven: set[tuple[str, str]] = set()

    def check_within(self, base: str, rel: str) -> None:
        """ValueError when rel, below base (both relative to the fs root), escapes base."""
        if (base, rel) in self._proven:
            return
        self.fs.resolve_within(base, rel)
        if len(self._proven) > 4096:
            self._proven.clear()
        self._proven.add((base, rel))

    def path(self, directory: str) -> str:
        """join(mount, directory), spelled out: every read and write of a plan goes through it."""
        if not directory:
            return self.mount
        return f"{self.mount}/{directory}" if self.mount else directory

    def exists(self, directory: str) -> bool:
        return self.fs.is_dir(self.path(directory))

    def raw(self, directory: str, file: str) -> str | None:
        return self.fs.read_optional(f"{self.path(directory)}/{file}")

    def canonical(self, directory: str, file: str) -> str | None:
        text = self.raw(directory, file)
        if text is None:
            return None
        try:
            return FILES[file].parse(text.strip())
        except ValueError:
            raise HostError(file_key(directory, file), f"unexpected content {text!r}") from None

    def subgroups(self, directory: str) -> list[str]:
        names = self._list(directory)
        return [] if names is None else [join(directory, n) for n in names]

    def _list(self, directory: str) -> list[str] | None:
        """Names of the directory's subdirectories; None when it is not a directory (one
        scandir, no stat before it)."""
        try:
            return self.fs.subdirs(self.path(directory))
        except HostError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return None
            raise

    def snapshot(self) -> CgroupView:
        """A view that reads each file and directory at most once: for one plan, which reads
        the same parents and siblings many times and writes nothing. Not for reuse across
        requests (the host changes between them)."""
        return _SnapshotView(self)


class _SnapshotView(CgroupView):
    """CgroupView memoizing exists/raw/subgroups; proofs of containment stay shared."""

    def __init__(self, view: CgroupView) -> None:
        super().__init__(view.fs, view.mount)
        self._proven = view._proven
        self._exists: dict[str, bool] = {}
        self._raw: dict[tuple[str, str], str | None] = {}
        self._subgroups: dict[str, list[str]] = {}

    def exists(self, directory: str) -> bool:
        if directory not in self._exists:
            self._exists[directory] = super().exists(directory)
        return self._exists[directory]

    def raw(self, directory: str, file: str) -> str | None:
        key = (directory, file)
        if key not in self._raw:
            self._raw[key] = super().raw(directory, file)
        return self._raw[key]

    def subgroups(self, directory: str) -> list[str]:
        if directory not in self._subgroups:
            names = self._list(directory)
            self._exists.setdefault(directory, names is not None)  # listed: it is a directory
            self._subgroups[directory] = [] if names is None else [join(directory, n) for n in names]
        return list(self._subgroups[directory])

    def snapshot(self) -> CgroupView:
        return self


class Planner:
    """Desired knobs for a list of groups under `root` (see the cgroups module docstring)."""

    def __init__(self, view: CgroupView, layout: CgroupLayout, root: tuple[str, ...]) -> None:
        self.view = view
        self.layout = layout
        self.root = root
        self.desired: dict[str, Value] = {}
        self._planned_children: dict[str, set[str]] = {}
        self._dir_owner: dict[str, str] = {}  # directory -> the group entry that plans it
        self._owners: dict[str, tuple[str, Hierarchy]] = {}  # file key -> (profile field, hierarchy)

    def plan(self, groups: list[Group]) -> dict[str, Value]:
        for group in sorted(groups, key=lambda g: len(g.parts)):  # parents before children
            self._plan_group(group)
        self._check_v1_rules()
        return self.desired

    # -- cgroup_v1rules.Tree: the hierarchy as it will be

    def value(self, directory: str, file: str) -> str | None:
        key = file_key(directory, file)
        return self.desired[key] if key in self.desired else self.view.canonical(directory, file)

    def current(self, directory: str, file: str) -> str | None:
        return self.view.canonical(directory, file)

    def children(self, directory: str) -> list[str]:
        planned = self._planned_children.get(directory, set())
        return sorted(planned | set(self.view.subgroups(directory)))

    # -- planning

    def _plan_group(self, group: Group) -> None:
        hierarchies = self.layout.group_hierarchies()
        if not hierarchies:
            raise Unsupported(f"{group.where}: no cgroup hierarchy under /{self.view.mount}")
        for spec in FIELDS:
            if spec.name in group.values and self.layout.hierarchy_of(spec.controller) is None:
                raise Unsupported(
                    f"{group.where}.{spec.name}: the {spec.controller} controller is not available "
                    f"on this node (cgroup {self.layout.version})"
                )
        chain = self.root + group.parts
        for hierarchy in hierarchies:
            try:
                self.view.check_within(join(hierarchy.path, *self.root), "/".join(group.parts))
            except ValueError as exc:
                raise InvalidSpec(f"{group.where}.path", str(exc)) from None
            dirs = [self.top(hierarchy)]  # then each directory down to the group's own
            for part in chain:
                dirs.append(f"{dirs[-1]}/{part}" if dirs[-1] else part)
            for parent, directory in pairwise(dirs):
                self._plan_directory(hierarchy, parent, directory, group.where)
            self._plan_files(group, hierarchy, dirs)

    def top(self, hierarchy: Hierarchy) -> str:
        return hierarchy_top(hierarchy, self.view.mount)

    def _plan_directory(self, hierarchy: Hierarchy, parent: str, directory: str, where: str) -> None:
        self.desired[dir_key(directory)] = DIR_PRESENT
        self._dir_owner.setdefault(directory, where)
        self._planned_children.setdefault(parent, set()).add(directory)
        if hierarchy.version != "v1" or "cpuset" not in hierarchy.controllers:
            return
        exists = self.view.exists(directory)
        for kind in ("cpus", "mems"):
            # A new v1 cpuset is empty and would admit no task; so is one re-created by someone
            # else since our last apply (its knobs stay desired: planning them again is what
            # makes a re-apply converge instead of leaving them drifted for ever).
            key = file_key(directory, f"cpuset.{kind}")
            if not exists or self.view.canonical(directory, f"cpuset.{kind}") == "":
                inherited = cpulist.format(self._effective(hierarchy, parent, kind))
                self.desired.setdefault(key, inherited)

    def _plan_files(self, group: Group, hierarchy: Hierarchy, dirs: list[str]) -> None:
        target, parent = dirs[-1], dirs[-2]
        fields = [f for f in FIELDS if f.name in group.values and f.controller in hierarchy.controllers]
        if hierarchy.version == "v2":
            for controller in sorted({f.controller for f in fields}):
                for ancestor in dirs[:-1]:
                    self.desired[toggle_key(ancestor, controller)] = ENABLED
        for spec in fields:
            value = group.values[spec.name]
            if spec.controller == "cpuset":
                self._check_cpuset(f"{group.where}.{spec.name}", hierarchy, parent, value)
            if hierarchy.version == "v1":
                self._set(file_key(target, spec.v1_file), spec.v1_value(value), group, spec.name, hierarchy)
            elif spec.v2_file != "cpu.max":
                self._set(file_key(target, spec.v2_file), value, group, spec.name, hierarchy)
        bandwidth = [name for name in ("cpu_quota_us", "cpu_period_us") if name in group.values]
        if hierarchy.version == "v2" and "cpu" in hierarchy.controllers and bandwidth:
            quota, period = (self.view.canonical(target, "cpu.max") or f"max {DEFAULT_PERIOD_US}").split()
            quota = group.values.get("cpu_quota_us", quota)
            period = group.values.get("cpu_period_us", period)
            self._set(file_key(target, "cpu.max"), f"{quota} {period}", group, bandwidth[0], hierarchy)

    def _set(self, key: str, value: str, group: Group, name: str, hierarchy: Hierarchy) -> None:
        self.desired[key] = value
        self._owners[key] = (f"{group.where}.{name}", hierarchy)

    def _check_cpuset(self, where: str, hierarchy: Hierarchy, parent: str, value: str) -> None:
        kind = "cpus" if where.endswith("cpuset_cpus") else "mems"
        wanted = cpulist.parse(value)
        if not wanted and hierarchy.version == "v1":
            raise InvalidSpec(where, "an empty cpuset on cgroup v1 admits no task")
        allowed = self._effective(hierarchy, parent, kind)
        if not wanted <= allowed:
            raise InvalidSpec(
                where,
                f"{value} is not within the parent's effective {kind} {cpulist.format(allowed)!r} "
                f"(/{self.view.path(parent)})",
            )

    def _effective(self, hierarchy: Hierarchy, directory: str, kind: str) -> frozenset[int]:
        """The cpus/mems a child of `directory` may use: planned, else read, else inherited."""
        parent = directory.rpartition("/")[0] if directory != self.top(hierarchy) else None
        planned = self.desired.get(file_key(directory, f"cpuset.{kind}"))
        if planned:
            own = cpulist.parse(planned)
            if hierarchy.version == "v1" or parent is None:
                return own
            inherited = self._effective(hierarchy, parent, kind)
            return (own & inherited) or inherited
        text = self.view.raw(directory, EFFECTIVE[(hierarchy.version, kind)])
        if text is not None:
            return cpulist.parse(text)
        return frozenset() if parent is None else self._effective(hierarchy, parent, kind)

    def _check_v1_rules(self) -> None:
        """What cgroup v1 would refuse at write time, found before any write: bandwidth against
        ancestors and descendants, and every cpuset write replayed in the order it will be made."""
        for key, (where, hierarchy) in self._owners.items():
            knob = parse_key(key)
            if hierarchy.version == "v1" and knob.file in _BANDWIDTH and self._changes(key):
                reason = cgroup_v1rules.quota_conflict(self, knob.directory, self.top(hierarchy))
                if reason:
                    raise InvalidSpec(where, reason)
        cpuset = self.layout.hierarchy_of("cpuset")
        if cpuset is None or cpuset.version != "v1":
            return
        changes = [
            Write("cgroups", key, self.current(knob.directory, knob.file or ""), value)
            for key, value in self.desired.items()
            if (knob := parse_key(key)).file in _CPUSETS and self._changes(key)
        ]
        ordered = [parse_key(w.key) for w in sorted(changes, key=lambda w: rank(parse_key(w.key), w))]
        steps = [(k.directory, k.file or "", self.desired[str(k)] or "") for k in ordered]
        refusal = cgroup_v1rules.replay_cpusets(self, steps, self.top(cpuset))
        if refusal is not None:
            knob = ordered[refusal[0]]
            owner = self._owners.get(str(knob))
            raise InvalidSpec(owner[0] if owner else f"{self._dir_owner[knob.directory]}.path", refusal[1])

    def _changes(self, key: str) -> bool:
        knob = parse_key(key)
        return self.current(knob.directory, knob.file or "") != self.desired[key]


_BANDWIDTH = ("cpu.cfs_quota_us", "cpu.cfs_period_us")
_CPUSETS = ("cpuset.cpus", "cpuset.mems")


def rank(knob: CgroupKey, write: Write) -> tuple[int, int]:
    """Phase, then depth (shallow first while building up, deep first while tearing down)."""
    if knob.is_dir:
        return (0, knob.depth) if write.after is not None else (5, -knob.depth)
    if knob.is_toggle:
        return (1, knob.depth) if write.after == ENABLED else (6, -knob.depth)
    change = FILES[knob.file or ""].widens(write.before, write.after)
    if change > 0:
        return (2, knob.depth)
    if change < 0:
        return (4, -knob.depth)
    return (3, 0)
