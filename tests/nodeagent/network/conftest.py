"""Fixtures of the network mechanism tests: an in-memory netlink that behaves like the kernel,
and real network namespaces with veth pairs (uniquely named, always removed)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from nodeagent.errors import HostError
from nodeagent.host.fs import HostFS
from nodeagent.host.netvalues import Feature, HtbClassParams, Link, Qdisc, RootState, TbfParams
from nodeagent.mechanisms.base import MechanismContext, Write
from nodeagent.mechanisms.network import NetworkMechanism

# ---------------------------------------------------------------- in-memory netlink


@dataclass
class FakeIface:
    link: Link
    root: Qdisc | None = None
    classes: dict[int, HtbClassParams] = field(default_factory=dict)


class FakeNetlink:
    """A NetPort with the kernel's rules that matter here: an HTB cannot be changed in place,
    replacing a root with another handle grafts (dropping the old tree), deleting needs the
    right handle. Records every mutating call in `calls`; `fail` makes one operation fail."""

    def __init__(self, unsupported: Sequence[str] = ("qdisc/netem", "link/dummy")) -> None:
        self.ifaces: dict[tuple[str, str], FakeIface] = {}
        self.netns: set[str] = set()
        self.calls: list[tuple[Any, ...]] = []
        self.fail: str | None = None
        self.unsupported = set(unsupported)
        self.probe_runs = True
        self.reads = 0  # roots() calls: reading a profile must batch per namespace

    def add(self, netns: str, name: str, mtu: int = 1500) -> FakeIface:
        if netns:
            self.netns.add(netns)
        index = 1 + sum(1 for ns, _ in self.ifaces if ns == netns)
        iface = FakeIface(Link(name, netns, index, "up", mtu, "noqueue"))
        self.ifaces[(netns, name)] = iface
        return iface

    def _iface(self, netns: str, ifname: str) -> FakeIface:
        self._ns(netns)
        if (netns, ifname) not in self.ifaces:
            raise HostError(f"{netns}/{ifname}", "no such interface", errno.ENODEV)
        return self.ifaces[(netns, ifname)]

    def _ns(self, netns: str) -> None:
        if netns and netns not in self.netns:
            raise HostError(f"netns:{netns}", "no such network namespace", errno.ENOENT)

    def _mutate(self, op: str, *args: Any) -> None:
        if self.fail == op:
            raise HostError(op, "injected failure", errno.EIO)
        self.calls.append((op, *args))

    def namespaces(self) -> list[str]:
        return sorted(self.netns)

    def links(self, netns: str) -> list[Link]:
        self._ns(netns)
        return [i.link for (ns, _), i in self.ifaces.items() if ns == netns]

    def roots(self, netns: str, ifnames: Sequence[str], htb_major: int | None) -> dict[str, RootState]:
        self._ns(netns)
        self.reads += 1
        out = {}
        for name in ifnames:
            iface = self.ifaces.get((netns, name))
            if iface is None:
                continue
            root = iface.root
            ours = root is not None and root.kind == "htb" and root.handle >> 16 == htb_major
            classes = tuple(iface.classes[m] for m in sorted(iface.classes)) if ours else ()
            out[name] = RootState(iface.link, root, classes)
        return out

    def _graft(self, iface: FakeIface, qdisc: Qdisc) -> None:
        if iface.root is not None and iface.root.handle == qdisc.handle and iface.root.kind != qdisc.kind:
            raise HostError("graft", "Invalid qdisc name", errno.EINVAL)
        if iface.root is None or iface.root.handle != qdisc.handle:
            iface.classes = {}
        iface.root = qdisc

    def replace_htb_root(self, netns: str, ifname: str, major: int, default_minor: int) -> None:
        iface = self._iface(netns, ifname)
        if iface.root is not None and iface.root.handle == major << 16:
            raise HostError("htb", "Change operation not supported by specified qdisc", errno.EINVAL)
        self._mutate("replace_htb_root", netns, ifname, default_minor)
        self._graft(iface, Qdisc("htb", major << 16, {"default": default_minor}))

    def replace_htb_class(self, netns: str, ifname: str, major: int, params: HtbClassParams) -> None:
        iface = self._iface(netns, ifname)
        if iface.root is None or iface.root.handle != major << 16:
            raise HostError("class", "no such qdisc", errno.ENOENT)
        self._mutate("replace_htb_class", netns, ifname, params.minor)
        iface.classes[params.minor] = params

    def delete_htb_class(self, netns: str, ifname: str, major: int, minor: int) -> None:
        iface = self._iface(netns, ifname)
        self._mutate("delete_htb_class", netns, ifname, minor)
        iface.classes.pop(minor, None)

    def replace_tbf_root(self, netns: str, ifname: str, major: int, params: TbfParams) -> None:
        iface = self._iface(netns, ifname)
        self._mutate("replace_tbf_root", netns, ifname, params.rate)
        qdisc = Qdisc(
            "tbf", major << 16, {"rate": params.rate, "buffer": params.buffer, "limit": params.limit}
        )
        self._graft(iface, qdisc)

    def delete_root(self, netns: str, ifname: str, handle: int) -> None:
        iface = self._iface(netns, ifname)
        if iface.root is None or iface.root.handle != handle:
            raise HostError("delete", "Invalid handle", errno.EINVAL)
        self._mutate("delete_root", netns, ifname, handle)
        iface.root, iface.classes = None, {}

    def probe_features(self, qdisc_kinds: Sequence[str], link_kinds: Sequence[str]) -> list[Feature]:
        names = [f"qdisc/{k}" for k in qdisc_kinds] + [f"link/{k}" for k in link_kinds]
        if not self.probe_runs:
            return [Feature(n, False, "not probed", probed=False) for n in names]
        return [
            Feature(n, n not in self.unsupported, "missing" if n in self.unsupported else "") for n in names
        ]

    def close(self) -> None:
        return None  # the bootstrap closes the real adapter; a fake holds nothing


@pytest.fixture
def fake_netlink() -> FakeNetlink:
    port = FakeNetlink()
    port.add("demo", "veth0")
    port.add("demo", "veth1")
    port.add("", "eth0", mtu=9000)
    return port


@pytest.fixture
def make_mechanism(tmp_path: Any) -> Callable[..., NetworkMechanism]:
    """Build a mechanism over a (fake) netlink port."""

    def build(port: Any, netns_dir: str = "/run/netns", **options: Any) -> NetworkMechanism:
        context = MechanismContext(fs=HostFS(tmp_path), netns_dir=netns_dir, netlink=port, options=options)
        return NetworkMechanism(context)

    return build


def engine_apply(mech: NetworkMechanism, section: dict[str, Any]) -> list[Write]:
    """What the apply engine does with a mechanism (see base.py); returns the writes made."""
    plan = mech.validate(section, "network")
    desired = plan.desired
    actual = mech.read(desired, plan.snapshot)
    writes = mech.order([Write("network", k, actual[k], v) for k, v in desired.items() if actual[k] != v])
    for write in writes:
        mech.write(write)
    return writes


@pytest.fixture
def apply() -> Callable[[NetworkMechanism, dict[str, Any]], list[Write]]:
    return engine_apply


# ---------------------------------------------------------------- real namespaces


@dataclass(frozen=True)
class VethNamespace:
    """A named network namespace holding an up veth pair `<a>`/`<b>`."""

    name: str
    a: str = "mlt0"
    b: str = "mlt1"

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def ip(self, *args: str) -> None:
        subprocess.run(["ip", "-n", self.name, *args], check=True, capture_output=True, timeout=30)

    def tc(self, *args: str) -> None:
        subprocess.run(["tc", "-n", self.name, *args], check=True, capture_output=True, timeout=30)


def _need_netns() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    if shutil.which("ip") is None or shutil.which("tc") is None:
        pytest.skip("needs iproute2 (ip, tc) to build the test namespaces")


@pytest.fixture
def veth_netns() -> Iterator[VethNamespace]:
    """A fresh, uniquely named namespace with an up veth pair, deleted even if the test fails."""
    _need_netns()
    ns = VethNamespace(f"mlsysops-net-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    created = subprocess.run(["ip", "netns", "add", ns.name], capture_output=True, text=True, timeout=30)
    if created.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {created.stderr.strip()}")
    try:
        ns.ip("link", "add", ns.a, "type", "veth", "peer", "name", ns.b)
        ns.ip("link", "set", ns.a, "up")
        ns.ip("link", "set", ns.b, "up")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns.name], capture_output=True, timeout=30)
