"""The `network` mechanism: an HTB (flat classes) or TBF root qdisc per interface, via netlink.

Knobs. One knob per interface root, keyed `<netns or ->/<ifname>/root` (e.g. `demo/veth0/root`,
`-/eth1/root`). Its value is the canonical JSON of the whole root tree (see tcmodel.py); None
is the kernel's default (no root qdisc of ours). One knob per tree, not per class, because a
tree is replaced as a unit: classes cannot outlive their qdisc, and undo must restore the tree.

Ownership. Our qdiscs carry fixed handles, `6d6c:` ("ml") for HTB and `6d6d:` for TBF. A root
with handle major 0 is the kernel's default. Any other root qdisc (someone's fq_codel, an mq
added by hand, an HTB with filters on `1:`) is *foreign*: reported by read() as
{"foreign":true,"kind":..,"handle":..} and never replaced or deleted. Validation refuses to
shape such an interface, naming the qdisc, because nothing short of replaying every qdisc,
class and filter could restore it on reset, and TuneD's rule is to change only what can be put
back. (tc itself would simply overwrite; the operator deletes the foreign root first.) The
kernel-default root (noqueue, pfifo_fast, mq with default children) needs no recording: deleting
our root brings the default back, exactly.

Writes are tc "replace" semantics, idempotent, with the least disturbance:
  * TBF -> TBF changes parameters in place; switching between HTB and TBF (or from the default)
    grafts the new root over the old one atomically (distinct handles make that possible);
  * HTB -> HTB replaces changed classes and deletes classes no longer wanted; only a change of
    `default_class` recreates the qdisc, because the kernel cannot change it in place;
  * None deletes our root (a no-op when the default is already there).
If a write fails half-way, the previous tree is put back before the error is raised.

Options (`mechanisms.network.options` in the agent's config): `qdisc_kinds` and `link_kinds`,
the kinds probed and reported in the inventory (defaults below; htb and tbf are always probed);
`allow_interfaces`, interfaces of the agent's namespace that may be shaped although protected.
A bad option raises InvalidSpec whose field is the option's name.

Protected interfaces: those carrying a default route in the agent's namespace (proc/net/route),
i.e. how the node is managed and reached. A profile that shapes one (an HTB or TBF root; removing
our root is always allowed) is refused, unless `allow_interfaces` names it: one typo in a rate
must not cut the node off at 1 bit/s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from nodeagent.errors import HostError, InvalidSpec
from nodeagent.host.netvalues import Feature, Link, Qdisc, RootState, TbfParams
from nodeagent.mechanisms.base import Capabilities, MechanismContext, Plan, Snapshot, Value, Write
from nodeagent.mechanisms.netport import NetPort

# The profile model (netspec, tcmodel, tcunits, and fractions/decimal under them: 0.5 MiB) is
# imported by the methods that shape, with the first network request: an agent that never
# shapes only probes and lists interfaces.
if TYPE_CHECKING:
    from nodeagent.mechanisms.netspec import Entry, Target
    from nodeagent.mechanisms.tcmodel import ForeignRoot, HtbRoot, PschedClock, Root

HTB_MAJOR = 0x6D6C
TBF_MAJOR = 0x6D6D
QDISC_KINDS = ("htb", "tbf", "netem", "fq_codel", "fq", "sfq", "prio", "cake", "pfifo_fast", "mq")
LINK_KINDS = ("veth", "dummy", "bridge", "ifb", "vlan", "macvlan", "vxlan")
_OPTIONS = {"qdisc_kinds", "link_kinds", "allow_interfaces"}


@dataclasses.dataclass(frozen=True)
class RootsSnapshot:
    """What validate() read of the host: namespace -> interface -> its root (with our classes)."""

    states: Mapping[str, Mapping[str, RootState]]


class NetworkMechanism:
    """Traffic shaping per interface, through the netlink adapter in `context.netlink`."""

    name = "network"

    def __init__(self, context: MechanismContext) -> None:
        if context.netlink is None:
            raise ValueError("needs the netlink adapter (MechanismContext.netlink) that the bootstrap builds")
        self._context = context
        _check_options(context.options)
        self._qdisc_kinds = _kinds(context.options, "qdisc_kinds", QDISC_KINDS, required=("htb", "tbf"))
        self._link_kinds = _kinds(context.options, "link_kinds", LINK_KINDS)
        allowed = context.options.get("allow_interfaces", [])
        if not isinstance(allowed, list | tuple) or not all(isinstance(v, str) for v in allowed):
            raise InvalidSpec("allow_interfaces", "must be a list of interface names")
        self._allowed = frozenset(allowed)
        self._port: NetPort = context.netlink
        self._features: dict[str, Feature] | None = None

    @cached_property
    def _clock(self) -> PschedClock:
        """The kernel's packet-scheduler clock (proc/net/psched), read with the first request."""
        from nodeagent.mechanisms.tcmodel import PschedClock

        return PschedClock.parse(self._context.fs.read_optional("proc/net/psched"))

    # ------------------------------------------------------------ probe

    def probe(self) -> Capabilities:
        """Kernel features (tried in a throwaway namespace) and the interfaces of every namespace.

        Capabilities.details keys:
          "features":   [{"name": "qdisc/htb" | "link/veth" ..., "supported": bool, "reason": str,
                          "probed": bool (False: the probe could not run; not held against requests)}]
          "interfaces": [{"name", "netns" ("" = agent's own), "index", "state", "mtu", "root_qdisc"}]
          "namespaces": [named namespaces found in the netns directory]
          "netns_dir":  that directory
          "handles":    {"htb": "6d6c:", "tbf": "6d6d:"}, the handles marking our root qdiscs
          "errors":     [namespaces that could not be listed, with the reason]
        """
        deferred = self._features is None and not getattr(self._port, "loaded", True)
        try:  # a lazy port probes features at the first network request (validate), not at start
            features = {} if deferred else self._probe_features()
            namespaces = self._port.namespaces()
        except HostError as exc:
            return Capabilities(False, f"netlink unusable: {exc}")
        interfaces: list[Link] = []
        errors: list[str] = []
        for netns in ["", *namespaces]:
            try:
                interfaces.extend(self._port.links(netns))
            except HostError as exc:
                errors.append(str(exc))
        details = {
            "features": [
                {"name": f.name, "supported": f.supported, "reason": f.reason, "probed": f.probed}
                for f in features.values()
            ],
            "interfaces": [dataclasses.asdict(link) for link in interfaces],
            "namespaces": namespaces,
            "netns_dir": self._context.netns_dir,
            "handles": {"htb": f"{HTB_MAJOR:x}:", "tbf": f"{TBF_MAJOR:x}:"},
            "errors": errors,
        }
        if deferred:
            details["features_deferred"] = True  # probed with the first network request
            return Capabilities(True, "", details)
        shaping = [features[f"qdisc/{kind}"] for kind in ("htb", "tbf")]
        if any(f.supported for f in shaping):
            return Capabilities(True, "", details)
        unprobed = [f for f in shaping if not f.probed]
        reason = unprobed[0].reason if unprobed else "the kernel has neither sch_htb nor sch_tbf"
        return Capabilities(False, reason, details)

    def _probe_features(self) -> dict[str, Feature]:
        """Kernel features, probed once: a throwaway namespace per GetInventory would be costly,
        and what the kernel supports does not change while it runs. Probed again only while a
        probe could not run (e.g. without the right to create namespaces)."""
        if self._features is None or not all(f.probed for f in self._features.values()):
            found = self._port.probe_features(self._qdisc_kinds, self._link_kinds)
            self._features = {f.name: f for f in found}
        return self._features

    # ------------------------------------------------------------ validate

    def validate(self, section: Mapping[str, Any], field: str) -> Plan:
        """Syntax and ranges first (netspec), then the host: namespace, interface, MTU, kernel
        support, and no foreign root qdisc in the way. Reads only; errors in section order."""
        from nodeagent.mechanisms.netspec import parse_section
        from nodeagent.mechanisms.tcmodel import dumps

        entries = parse_section(section, field, self._clock)
        self._check_protected(entries)
        states: dict[str, dict[str, RootState]] = {}
        for entry in entries:
            netns = entry.target.netns
            if netns not in states:  # one batch of reads per namespace
                if netns and netns not in self._port.namespaces():
                    raise InvalidSpec(
                        f"{entry.field}.netns", f"no network namespace {netns!r} in {self._context.netns_dir}"
                    )
                names = [e.target.ifname for e in entries if e.target.netns == netns]
                states[netns] = self._port.roots(netns, names, HTB_MAJOR)  # our classes too: read() reuses it
            self._check_on_host(entry, states[netns].get(entry.target.ifname))
        return Plan({e.target.key: dumps(e.root) for e in entries}, RootsSnapshot(states))

    def _check_protected(self, entries: Sequence[Entry]) -> None:
        shaped = [e for e in entries if not e.target.netns and e.root is not None]
        if not shaped:
            return
        protected = default_route_interfaces(self._context.fs.read_optional("proc/net/route") or "")
        for entry in shaped:
            if entry.target.ifname in protected and entry.target.ifname not in self._allowed:
                raise InvalidSpec(
                    f"{entry.field}.name",
                    f"{entry.target.ifname} carries the default route (the node's management path): "
                    "refusing to shape it unless mechanisms.network.options.allow_interfaces lists it",
                )

    def _check_on_host(self, entry: Entry, state: RootState | None) -> None:
        from nodeagent.mechanisms.tcmodel import TbfRoot

        target, path = entry.target, entry.field
        if state is None:
            where = f"namespace {target.netns!r}" if target.netns else "the agent's namespace"
            raise InvalidSpec(f"{path}.name", f"no interface {target.ifname!r} in {where}")
        if entry.root is not None:
            feature = self._probe_features().get(f"qdisc/{entry.root.kind}")
            if feature is not None and feature.probed and not feature.supported:
                raise InvalidSpec(f"{path}.{entry.root.kind}", f"unsupported on this node: {feature.reason}")
        if isinstance(entry.root, TbfRoot) and entry.root.burst < state.link.mtu:
            raise InvalidSpec(
                f"{path}.tbf.burst",
                f"{entry.root.burst} bytes is below the MTU of {target.ifname} ({state.link.mtu}): "
                "full-size packets could never be sent",
            )
        current = _foreign(state.qdisc)
        if current is not None:
            raise InvalidSpec(
                path,
                f"{target.ifname} has a root qdisc {current.kind} {current.handle_text} not set up by "
                "mlsysops; refusing to replace what reset could not restore "
                f"(remove it first: tc qdisc del dev {target.ifname} root)",
            )

    # ------------------------------------------------------------ read

    def read(self, keys: Iterable[str], snapshot: Snapshot | None = None) -> dict[str, Value]:
        """The canonical root of each key's interface: from `snapshot` (the roots validate() read
        a moment ago: three netlink dumps per namespace fewer), else from the host."""
        from nodeagent.mechanisms.tcmodel import dumps

        targets = {key: _target(key) for key in keys}
        by_netns: dict[str, list[str]] = {}
        for target in targets.values():
            by_netns.setdefault(target.netns, []).append(target.ifname)
        known = snapshot.states if isinstance(snapshot, RootsSnapshot) else {}
        states = {
            netns: known[netns] if netns in known else self._roots(netns, names)
            for netns, names in by_netns.items()
        }
        return {key: dumps(self._decode(states[t.netns].get(t.ifname))) for key, t in targets.items()}

    def _read_root(self, target: Target) -> Root | None:
        return self._decode(self._roots(target.netns, [target.ifname]).get(target.ifname))

    def _roots(self, netns: str, ifnames: list[str]) -> dict[str, RootState]:
        try:
            return self._port.roots(netns, ifnames, HTB_MAJOR)
        except HostError as exc:
            if exc.errno == errno.ENOENT and netns:
                return {}  # the namespace is gone, and with it anything of ours
            raise

    def _decode(self, state: RootState | None) -> Root | None:
        """The canonical root of an interface; None for a missing one or the kernel default."""
        from nodeagent.mechanisms.tcmodel import HtbClass, HtbRoot, tbf_decode

        qdisc = state.qdisc if state else None
        if state is None or qdisc is None or qdisc.handle >> 16 == 0:
            return None
        foreign = _foreign(qdisc)
        if foreign is not None:
            return foreign
        if qdisc.kind == "htb":
            classes = tuple(HtbClass(c.minor, c.rate, c.ceil) for c in state.classes)
            return HtbRoot(qdisc.params.get("default", 0), classes)
        p = qdisc.params
        return tbf_decode(TbfParams(p["rate"], p["buffer"], p["limit"]), self._clock)

    # ------------------------------------------------------------ write

    def order(self, writes: Sequence[Write]) -> list[Write]:
        """Interfaces are independent, and each tree is written as a unit: any order works."""
        return list(writes)

    def write(self, write: Write) -> None:
        from nodeagent.mechanisms.tcmodel import ForeignRoot, loads

        target = _target(write.key)
        try:
            desired = loads(write.after)
        except ValueError as exc:
            raise HostError(write.key, str(exc)) from exc
        if isinstance(desired, ForeignRoot):
            raise HostError(write.key, f"cannot recreate {desired.kind} {desired.handle_text}: not ours")
        current = self._read_root(target)
        if isinstance(current, ForeignRoot):
            raise HostError(
                write.key, f"root qdisc {current.kind} {current.handle_text} is not ours; leaving it alone"
            )
        try:
            self._transition(target, current, desired)
        except HostError:
            with contextlib.suppress(HostError):  # put the previous tree back, then report
                now = self._read_root(target)
                if not isinstance(now, ForeignRoot):
                    self._transition(target, now, current)
            raise

    def _transition(self, target: Target, current: Root | None, desired: Root | None) -> None:
        from nodeagent.mechanisms.tcmodel import HtbRoot, TbfRoot, tbf_encode

        ns, ifname = target.netns, target.ifname
        if desired == current:
            return
        if desired is None:
            self._port.delete_root(ns, ifname, _handle_of(current))
        elif isinstance(desired, TbfRoot):
            self._port.replace_tbf_root(ns, ifname, TBF_MAJOR, tbf_encode(desired, self._clock))
        elif isinstance(desired, HtbRoot):
            self._write_htb(target, current, desired)

    def _write_htb(self, target: Target, current: Root | None, desired: HtbRoot) -> None:
        from nodeagent.mechanisms.tcmodel import HtbRoot, htb_class_params

        ns, ifname = target.netns, target.ifname
        if isinstance(current, HtbRoot) and current.default_class != desired.default_class:
            self._port.delete_root(ns, ifname, HTB_MAJOR << 16)  # htb cannot change defcls in place
            current = None
        existing = {c.minor: c for c in current.classes} if isinstance(current, HtbRoot) else {}
        if not isinstance(current, HtbRoot):
            self._port.replace_htb_root(ns, ifname, HTB_MAJOR, desired.default_class)
        for cls in desired.classes:
            if existing.get(cls.minor) != cls:
                self._port.replace_htb_class(ns, ifname, HTB_MAJOR, htb_class_params(cls, self._clock))
        wanted = {c.minor for c in desired.classes}
        for minor in sorted(set(existing) - wanted):
            self._port.delete_htb_class(ns, ifname, HTB_MAJOR, minor)


def _foreign(qdisc: Qdisc | None) -> ForeignRoot | None:
    """The qdisc as a ForeignRoot unless it is the kernel default or one of ours."""
    from nodeagent.mechanisms.tcmodel import ForeignRoot

    if qdisc is None or qdisc.handle >> 16 == 0:
        return None
    major = qdisc.handle >> 16
    if qdisc.kind == "htb" and major == HTB_MAJOR:
        return None
    if qdisc.kind == "tbf" and major == TBF_MAJOR and not qdisc.params.get("peak"):
        return None  # a peak rate would be someone's `tc qdisc change`: we do not model it
    return ForeignRoot(qdisc.kind, qdisc.handle)


def _handle_of(root: Root | None) -> int:
    from nodeagent.mechanisms.tcmodel import HtbRoot, TbfRoot

    if isinstance(root, HtbRoot):
        return HTB_MAJOR << 16
    if isinstance(root, TbfRoot):
        return TBF_MAJOR << 16
    raise AssertionError(f"no handle for {root!r}")  # None == None and foreign are handled earlier


def _target(key: str) -> Target:
    from nodeagent.mechanisms.netspec import Target

    try:
        return Target.from_key(key)
    except ValueError as exc:
        raise HostError(key, str(exc)) from exc


def default_route_interfaces(route_table: str) -> frozenset[str]:
    """Interfaces with a default route (destination and mask 0) in a /proc/net/route text."""
    found = set()
    for line in route_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 7 and fields[1] == "00000000" and fields[7] == "00000000":
            found.add(fields[0])
    return frozenset(found)


def _check_options(options: Mapping[str, Any]) -> None:
    for key in options:
        if key not in _OPTIONS:
            raise InvalidSpec(key, f"unknown option (expected one of {', '.join(sorted(_OPTIONS))})")


def _kinds(
    options: Mapping[str, Any], name: str, default: tuple[str, ...], required: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """A kinds option; the kinds this mechanism writes are always probed."""
    value = options.get(name, default)
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v.isidentifier() for v in value):
        raise InvalidSpec(name, "must be a list of kind names such as htb, tbf, veth")
    return tuple(dict.fromkeys([*required, *value]))
