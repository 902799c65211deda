"""The contract between the apply engine and a mechanism plugin.

A mechanism sees the host as a flat map of *knobs*: stable string keys (e.g.
`cpu0/scaling_governor`, `mlsysops-demo/app/cpu.max`, `ns1/veth0/root`) whose values are
canonical strings. The value `None` means "the object is absent" (no such cgroup, no root
qdisc of ours). With that one shape the engine owns the whole life cycle, TuneD-style:

    desired = mech.validate(section)                 # whole request checked, nothing written
    actual  = mech.read(desired.keys())              # read, compare ...
    writes  = [Write(k, actual[k], v) for ... if differ]
    writes  = mech.order(writes)                     # e.g. widen a range before narrowing it
    journal originals (fsync) -> mech.write(w) for w in writes   # ... write only if different
    on failure: mech.write(inverse) for what was written, newest first

and reset, drift detection and dry runs come for free. Values returned by read() must be
canonical (the same spelling validate() produces), or a second identical apply would write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from nodeagent.host.fs import HostFS

Value = str | None


@dataclass(frozen=True)
class Write:
    """One planned change of one knob; `before` is what was read when planning."""

    mechanism: str
    key: str
    before: Value
    after: Value

    def inverse(self) -> Write:
        return Write(self.mechanism, self.key, self.after, self.before)


@dataclass(frozen=True)
class Capabilities:
    """What probe() found: whether the mechanism works here, and details for the inventory."""

    available: bool
    reason: str = ""  # why not, when unavailable
    details: Mapping[str, Any] | None = None  # JSON-able; shown in the inventory


@dataclass(frozen=True)
class MechanismContext:
    """Everything a mechanism may touch, built once by the agent's bootstrap.

    Each plugin is constructed as `factory(context)`; tests build contexts over temporary or
    simulated trees.
    """

    fs: HostFS  # sysfs/procfs/cgroupfs below one root ("/" in production)
    cgroup_mount: str = "sys/fs/cgroup"  # where cgroupfs is mounted, relative to fs.root
    cgroup_root: str = "mlsysops"  # cgroup targets are relative to this dir in each hierarchy
    netns_dir: str = "/run/netns"  # where `ip netns` keeps named namespaces (absolute: not below fs.root)
    options: Mapping[str, Any] = field(default_factory=dict)  # this mechanism's section of the config


@runtime_checkable
class Mechanism(Protocol):
    """One tunable subsystem of the node. Plugins must not import grpc: they are pure policy
    over host adapters received in their constructor (see nodeagent/host)."""

    #: The profile section this mechanism owns, e.g. "cpufreq".
    name: str

    def probe(self) -> Capabilities:
        """Inspect the host once at start-up (and on GetInventory). Never raises for a missing
        feature: report it as unavailable/unsupported with a reason."""
        ...

    def validate(self, section: Mapping[str, Any], field: str) -> dict[str, Value]:
        """Check the whole section and return the desired knob values.

        Raises InvalidSpec(field_path, reason) naming the exact field (prefixed with `field`,
        e.g. "cgroups.groups[1].cpu_quota_us"). May read the host (e.g. a parent cpuset), must
        never write.
        """
        ...

    def read(self, keys: Iterable[str]) -> dict[str, Value]:
        """Actual canonical values of the given knobs (None when the object is absent)."""
        ...

    def order(self, writes: Sequence[Write]) -> list[Write]:
        """Return the writes in an order the kernel accepts (e.g. create a cgroup before its
        files, widen cpufreq ranges before narrowing, parent cpuset before child when widening).
        Used for applies, undo and reset alike."""
        ...

    def write(self, write: Write) -> None:
        """Perform one write. Raises HostError on failure; must leave the knob unchanged then."""
        ...


MechanismFactory = Callable[[MechanismContext], Mechanism]
