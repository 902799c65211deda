"""The contract between the apply engine and a mechanism plugin.

A mechanism sees the host as a flat map of *knobs*: stable string keys (e.g.
`cpu0/scaling_governor`, `mlsysops-demo/app/cpu.max`, `ns1/veth0/root`) whose values are
canonical strings. The value `None` means "the object is absent" (no such cgroup, no root
qdisc of ours). With that one shape the engine owns the whole life cycle, TuneD-style:

    plan    = mech.validate(section)                 # whole request checked, nothing written
    actual  = mech.read(plan.desired.keys(), plan.snapshot)   # read, compare ...
    writes  = [Write(k, actual[k], v) for ... if differ]
    writes  = mech.order(writes)                     # e.g. widen a range before narrowing it
    journal originals (fsync) -> mech.write(w) for w in writes   # ... write only if different
    on failure: mech.write(inverse) for what was written, newest first

and reset, drift detection and dry runs come for free. Values returned by read() must be
canonical (the same spelling validate() produces), or a second identical apply would write.

A validation that had to read the host anyway may keep what it read in `Plan.snapshot`; the
engine hands it back to the read() that diffs that plan (under the same lock, before any write),
so the host is not read twice. Every other read() gets None and reads the host.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias, runtime_checkable

from nodeagent.host.fs import HostFS
from nodeagent.mechanisms.netport import NetPort

Value = str | None

Snapshot: TypeAlias = object
"""What a mechanism read while validating; opaque to the engine, meaningful only to its maker."""


@dataclass(frozen=True)
class Plan:
    """What validate() returns: the desired value of each knob, and the snapshot it was planned
    on (None when the mechanism keeps none). The engine passes `snapshot` to the read() that
    diffs this plan, right after validate() and before any write; nothing else ever sees it."""

    desired: dict[str, Value]
    snapshot: Snapshot | None = None


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
    netlink: NetPort | None = None  # the netlink adapter, when a mechanism that needs it is enabled
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

    def validate(self, section: Mapping[str, Any], field: str) -> Plan:
        """Check the whole section and return the desired knob values (and, optionally, the
        snapshot of the host they were planned on).

        Raises InvalidSpec(field_path, reason) naming the exact field (prefixed with `field`,
        e.g. "cgroups.groups[1].cpu_quota_us"). May read the host (e.g. a parent cpuset), must
        never write.
        """
        ...

    def read(self, keys: Iterable[str], snapshot: Snapshot | None = None) -> dict[str, Value]:
        """Actual canonical values of the given knobs (None when the object is absent).

        `snapshot` is the Plan.snapshot of the plan being diffed, or None: read the host. A
        mechanism may answer from its own snapshot and must ignore one it does not recognise.
        """
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
