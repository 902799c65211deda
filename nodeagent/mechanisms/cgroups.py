"""cgroups: CPU quota/period, weight, cpuset and memory limit of groups below a configured root.

Profile section (proto `CgroupsProfile`, JSON mapping with proto field names)::

    {"groups": [{"path": "demo/app", "cpu_quota_us": 50000, "cpu_period_us": 100000,
                 "cpu_weight": 100, "cpuset_cpus": "0-1", "cpuset_mems": "0",
                 "memory_max_bytes": 268435456}]}

`path` is relative to `context.cgroup_root` inside every hierarchy under `context.cgroup_mount`;
absolute paths, '..', hidden or odd names and symlinks leading out of the root are refused. The
group (and any missing parent, the root included) is created in the unified hierarchy and in
each v1 hierarchy of cpu, cpuset and memory; reset removes what was created. quota and memory
take -1 for unlimited. The version is detected per controller (nodeagent/host/cgroupfs.py): on
v1 the fields become cpu.cfs_quota_us, cpu.cfs_period_us, cpu.shares, cpuset.cpus/mems and
memory.limit_in_bytes; on v2 cpu.max, cpu.weight, cpuset.cpus/mems and memory.max, and the
controllers are switched on in every ancestor's cgroup.subtree_control as planned writes. The
knob table with ranges and formats is nodeagent/mechanisms/cgroup_knobs.py, the key shapes are
in cgroup_keys.py.

cpuset rules: a child must stay within its parent's effective set (the parent's planned value
when the profile sets it too). v1 cpusets start empty and admit no task, so directories created
on v1 get their parent's cpus/mems unless the profile says otherwise. What cgroup v1 refuses at
write time is found in validate() (cgroup_v1rules.py): a quota/period above the nearest limited
ancestor's or below a limited descendant's, and any cpuset write that, replayed in the planned
order, would leave a child outside its parent (including moves no single order can make).
memory_max_bytes is planned in whole pages, as the kernel stores it.

Order (used for apply, undo and reset): create directories parents first, enable controllers
parents first, then writes that widen a limit parents first, neutral writes, writes that narrow
a limit children first, remove directories children first, disable controllers children first.

probe() details (for the inventory; `controllers` entries are the proto `CgroupController`)::

    {"version": "v1" | "v2" | "hybrid" | "none", "root": "mlsysops",
     "controllers": [{"name": "cpu", "version": "v1", "mount": "/sys/fs/cgroup/cpu"}, ...],
     "missing": ["cpuset", ...]}      # managed controllers this node lacks
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from nodeagent.errors import HostError, InvalidSpec
from nodeagent.host.cgroupfs import MANAGED, CgroupLayout, discover
from nodeagent.mechanisms import cpuspec
from nodeagent.mechanisms.base import Capabilities, MechanismContext, Plan, Snapshot, Value, Write
from nodeagent.mechanisms.cgroup_keys import (
    DIR_PRESENT,
    DISABLED,
    ENABLED,
    SUBTREE_CONTROL,
    CgroupKey,
    check_group_path,
    parse_key,
)
from nodeagent.mechanisms.cgroup_knobs import FIELDS, FILES, Limits
from nodeagent.mechanisms.cgroup_plan import CgroupView, Group, Planner, hierarchy_top, join, rank

_GROUP_FIELDS = ("path", *(f.name for f in FIELDS))


class CgroupsMechanism:
    """Resource limits of cgroups under the agent's root (see the module docstring)."""

    name = "cgroups"

    def __init__(self, context: MechanismContext) -> None:
        self._fs = context.fs
        self._mount = context.cgroup_mount.strip("/")
        self._view = CgroupView(context.fs, self._mount)
        try:
            self._root = tuple(check_group_path(context.cgroup_root))
        except ValueError as exc:
            raise ValueError(f"cgroup_root {context.cgroup_root!r} {exc}") from None
        self._layout_cache: CgroupLayout | None = None
        # Keys already checked by _parse: an apply parses each key in read, order and write,
        # and the same keys come back on every apply. Cleared with the layout they depend on.
        self._parsed: dict[str, CgroupKey] = {}
        self._memory_total_cache: int | None = None

    def _layout(self, refresh: bool = False) -> CgroupLayout:
        """The mount layout, discovered once and again on each probe (mounts change only when
        an administrator remounts, and the inventory's reprobe is how the agent learns it)."""
        if self._layout_cache is None or refresh:
            self._layout_cache = discover(self._fs, self._mount)
            self._parsed.clear()
            self._memory_total_cache = None
        return self._layout_cache

    # -- probe -----------------------------------------------------------------------------------

    def probe(self) -> Capabilities:
        try:
            layout = self._layout(refresh=True)
        except HostError as exc:
            return Capabilities(False, f"cannot read the cgroup mounts: {exc}")
        controllers = [
            {"name": name, "version": h.version, "mount": f"/{h.path}"}
            for h in layout.hierarchies
            for name in h.controllers
        ]
        details = {
            "version": layout.version,
            "root": "/".join(self._root),
            "controllers": sorted(controllers, key=lambda c: c["name"]),
            "missing": [c for c in MANAGED if layout.hierarchy_of(c) is None],
        }
        if not layout.hierarchies:
            return Capabilities(False, f"no cgroup filesystem mounted under /{self._mount}", details)
        return Capabilities(True, "", details)

    # -- validate ------------------------------------------------------------------------------------

    def validate(self, section: Mapping[str, Any], field: str) -> Plan:
        """The desired knobs, planned on one snapshot of the groups' files. The snapshot goes
        back to the engine with the plan: its diff, the next read, needs no second pass over
        the files."""
        body = cpuspec.mapping(section, field, ("groups",))
        limits = Limits(memory_total=self._memory_total())
        groups: list[Group] = []
        seen: dict[tuple[str, ...], str] = {}
        for i, entry in enumerate(cpuspec.items(body, "groups", field)):
            group = self._read_group(entry, f"{field}.groups[{i}]", limits)
            if group.parts in seen:
                raise InvalidSpec(
                    f"{group.where}.path", f"{'/'.join(group.parts)!r} is also set by {seen[group.parts]}"
                )
            seen[group.parts] = group.where
            groups.append(group)
        view = self._view.snapshot()
        return Plan(Planner(view, self._layout(), self._root).plan(groups), view)

    def _read_group(self, entry: Any, where: str, limits: Limits) -> Group:
        cpuspec.mapping(entry, where, _GROUP_FIELDS)
        try:
            parts = check_group_path(cpuspec.optional_str(entry, "path", where) or "")
        except ValueError as exc:
            raise InvalidSpec(f"{where}.path", str(exc)) from None
        values: dict[str, str] = {}
        for spec in FIELDS:
            read = cpuspec.optional_int if spec.kind is int else cpuspec.optional_str
            raw = read(entry, spec.name, where)
            if raw is None:
                continue
            try:
                values[spec.name] = spec.check(raw, limits)
            except ValueError as exc:
                raise InvalidSpec(f"{where}.{spec.name}", str(exc)) from None
        return Group(where, tuple(parts), values)

    # -- read / order / write --------------------------------------------------------------------------

    def read(self, keys: Iterable[str], snapshot: Snapshot | None = None) -> dict[str, Value]:
        view = snapshot if isinstance(snapshot, CgroupView) else self._view
        result: dict[str, Value] = {}
        for key in keys:
            knob = self._parse(key)
            if knob.is_dir:
                result[key] = DIR_PRESENT if view.exists(knob.directory) else None
            elif knob.is_toggle:
                text = view.raw(knob.directory, SUBTREE_CONTROL)
                result[key] = (
                    None if text is None else ENABLED if knob.controller in text.split() else DISABLED
                )
            else:
                result[key] = view.canonical(knob.directory, knob.file or "")
        return result

    def order(self, writes: Sequence[Write]) -> list[Write]:
        return sorted(writes, key=lambda w: rank(self._parse(w.key), w))

    def write(self, write: Write) -> None:
        knob = self._parse(write.key)
        path = self._view.path(knob.directory)
        if knob.is_dir:
            if write.after not in (DIR_PRESENT, None):
                raise HostError(
                    write.key, f"a cgroup directory is {DIR_PRESENT!r} or absent, not {write.after!r}"
                )
            (self._fs.mkdir if write.after else self._fs.rmdir)(path)
        elif write.after is None:
            return  # the file goes away with its directory (or its controller): nothing to write
        elif knob.is_toggle:
            if write.after not in (ENABLED, DISABLED):
                raise HostError(
                    write.key, f"a controller is {ENABLED!r} or {DISABLED!r}, not {write.after!r}"
                )
            if write.after == DISABLED and not self._view.exists(knob.directory):
                return  # the group is gone (removed earlier in this reset): nothing is enabled
            sign = "+" if write.after == ENABLED else "-"
            self._fs.write(f"{path}/{SUBTREE_CONTROL}", f"{sign}{knob.controller}")
        else:
            self._fs.write(f"{path}/{knob.file}", FILES[knob.file or ""].render(write.after))

    # -- helpers ---------------------------------------------------------------------------------------

    def _parse(self, key: str) -> CgroupKey:
        """The key's parts, refusing anything that is not one of our knobs inside the mount."""
        knob = self._parsed.get(key)
        if knob is None:
            knob = self._parse_uncached(key)
            if len(self._parsed) > 4096:  # keys from a damaged journal cannot grow it forever
                self._parsed.clear()
            self._parsed[key] = knob
        return knob

    def _parse_uncached(self, key: str) -> CgroupKey:
        try:
            knob = parse_key(key)
            if knob.file is not None and not knob.is_toggle and knob.file not in FILES:
                raise ValueError(f"{knob.file!r} is not a file the cgroups mechanism manages")
            if not self._owned(knob):
                raise ValueError(f"is outside the agent's cgroup root {'/'.join(self._root)!r}")
            if knob.directory:
                self._view.check_within(self._mount, knob.directory)
        except ValueError as exc:
            raise HostError(key, str(exc)) from None
        return knob

    def _owned(self, knob: CgroupKey) -> bool:
        """Our root, what is below it, and the path leading to it (which we may create); the
        hierarchy's top only for controller toggles. A key read back from a damaged journal can
        touch nothing else."""
        for hierarchy in self._layout().group_hierarchies():
            top = hierarchy_top(hierarchy, self._mount)
            base = join(top, *self._root)
            inside = knob.directory == base or knob.directory.startswith(base + "/")
            leading = base.startswith(knob.directory + "/") or (knob.directory == "" and base != "")
            if inside or (leading and (knob.directory != top or knob.is_toggle)):
                return True
        return False

    def _memory_total(self) -> int:
        """MemTotal in bytes from proc/meminfo (0 when unknown: the upper bound is skipped).

        Read once per probe: it changes only with memory hotplug, and reading meminfo makes the
        kernel sum every counter it reports, a tenth of a millisecond per Apply."""
        if self._memory_total_cache is None:
            self._memory_total_cache = 0
            for line in (self._fs.read_optional("proc/meminfo") or "").splitlines():
                name, _, rest = line.partition(":")
                if name == "MemTotal" and rest.split() and rest.split()[0].isdigit():
                    self._memory_total_cache = int(rest.split()[0]) * 1024
                    break
        return self._memory_total_cache
