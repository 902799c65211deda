"""The network mechanism against the real kernel, inside throwaway namespaces with veth pairs.

Results are checked independently of the code under test: through pyroute2's own namespace
machinery (its forked helper, not our setns thread) and through `tc -j`. The host's own
interfaces are never touched: every interface here lives in a namespace the fixture created.
"""

from __future__ import annotations

import errno
import json
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pyroute2 import IPRoute

from nodeagent.errors import HostError, InvalidSpec
from nodeagent.host.fs import HostFS
from nodeagent.host.netlink import NetlinkHost
from nodeagent.mechanisms.base import MechanismContext
from nodeagent.mechanisms.network import HTB_MAJOR, TBF_MAJOR, NetworkMechanism

TC_H_ROOT = 0xFFFFFFFF


@pytest.fixture
def mech(veth_netns: Any) -> Iterator[NetworkMechanism]:
    netlink = NetlinkHost("/run/netns")
    try:
        yield NetworkMechanism(MechanismContext(fs=HostFS("/"), netns_dir="/run/netns", netlink=netlink))
    finally:
        netlink.close()


def spec(ns: Any, a: dict[str, Any] | None = None, b: dict[str, Any] | None = None) -> dict[str, Any]:
    interfaces = []
    for name, root in ((ns.a, a), (ns.b, b)):
        if root is not None:
            interfaces.append({"name": name, "netns": ns.name, **root})
    return {"interfaces": interfaces}


HTB = {
    "htb": {
        "default_class": 16,
        "classes": [{"minor": 16, "rate": "10mbit", "ceil": "20mbit"}, {"minor": 32, "rate": "512kbit"}],
    }
}
TBF = {"tbf": {"rate": "1mbit", "burst": "32kb", "latency": "50ms"}}


def kernel_view(ns: Any) -> dict[str, Any]:
    """Root qdiscs and classes of the namespace, read with pyroute2 alone."""
    with IPRoute(netns=ns.path, flags=0) as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        view: dict[str, Any] = {}
        for q in ipr.get_qdiscs():
            if q["parent"] == TC_H_ROOT:
                view[names[q["index"]]] = {"kind": q.get_attr("TCA_KIND"), "major": q["handle"] >> 16}
                if q.get_attr("TCA_KIND") == "htb":
                    view[names[q["index"]]]["default"] = q.get_attr("TCA_OPTIONS").get_attr("TCA_HTB_INIT")[
                        "defcls"
                    ]
        for index, name in names.items():
            for c in ipr.get_classes(index=index):
                if c["index"] == index and c.get_attr("TCA_KIND") == "htb":
                    options = c.get_attr("TCA_OPTIONS")
                    parms = options.get_attr("TCA_HTB_PARMS")
                    view.setdefault(name, {}).setdefault("classes", {})[c["handle"] & 0xFFFF] = (
                        options.get_attr("TCA_HTB_RATE64") or parms["rate"],
                        options.get_attr("TCA_HTB_CEIL64") or parms["ceil"],
                    )
        return view


def tc_json(ns: Any, *args: str) -> Any:
    out = subprocess.run(
        ["tc", "-j", "-n", ns.name, *args], check=True, capture_output=True, text=True, timeout=30
    )
    return json.loads(out.stdout or "[]")


def test_htb_and_tbf_land_in_the_kernel_as_specified(
    mech: NetworkMechanism, veth_netns: Any, apply: Callable
) -> None:
    writes = apply(mech, spec(veth_netns, HTB, TBF))
    assert len(writes) == 2
    view = kernel_view(veth_netns)
    assert view[veth_netns.a] == {
        "kind": "htb",
        "major": HTB_MAJOR,
        "default": 16,
        "classes": {16: (1_250_000, 2_500_000), 32: (64_000, 64_000)},
    }
    assert view[veth_netns.b] == {"kind": "tbf", "major": TBF_MAJOR}
    (tbf,) = [q for q in tc_json(veth_netns, "qdisc", "show", "dev", veth_netns.b) if q.get("root")]
    assert tbf["options"] == {"rate": 125_000, "burst": 32_768, "lat": 50_000}  # as tc itself reads it


def test_a_second_identical_apply_writes_nothing(
    mech: NetworkMechanism, veth_netns: Any, apply: Callable
) -> None:
    apply(mech, spec(veth_netns, HTB, TBF))
    assert apply(mech, spec(veth_netns, HTB, TBF)) == []
    odd = {"tbf": {"rate": "1gbit", "burst": "2001b", "latency": "3ms"}}  # not representable exactly
    assert len(apply(mech, spec(veth_netns, b=odd))) == 1
    assert apply(mech, spec(veth_netns, b=odd)) == []


def test_a_change_replaces_classes_and_drops_the_unwanted(
    mech: NetworkMechanism, veth_netns: Any, apply: Callable
) -> None:
    apply(mech, spec(veth_netns, HTB))
    changed = {"htb": {"default_class": 16, "classes": [{"minor": 16, "rate": "5mbit", "ceil": "1gbit"}]}}
    (write,) = apply(mech, spec(veth_netns, changed))
    assert write.before == mech.validate(spec(veth_netns, HTB), "network").desired[write.key]
    assert kernel_view(veth_netns)[veth_netns.a]["classes"] == {16: (625_000, 125_000_000)}


def test_rates_beyond_32_bits_round_trip(mech: NetworkMechanism, veth_netns: Any, apply: Callable) -> None:
    fast = {"htb": {"default_class": 1, "classes": [{"minor": 1, "rate": "40gbit", "ceil": "100gbit"}]}}
    apply(mech, spec(veth_netns, fast))
    assert kernel_view(veth_netns)[veth_netns.a]["classes"] == {1: (5 * 10**9, 12_500_000_000)}
    assert apply(mech, spec(veth_netns, fast)) == []


def test_a_new_default_class_and_a_kind_switch_are_applied(
    mech: NetworkMechanism, veth_netns: Any, apply: Callable
) -> None:
    apply(mech, spec(veth_netns, HTB))
    apply(mech, spec(veth_netns, {"htb": {**HTB["htb"], "default_class": 32}}))
    assert kernel_view(veth_netns)[veth_netns.a]["default"] == 32
    assert len(kernel_view(veth_netns)[veth_netns.a]["classes"]) == 2
    apply(mech, spec(veth_netns, TBF))
    assert kernel_view(veth_netns)[veth_netns.a] == {"kind": "tbf", "major": TBF_MAJOR}


def test_restoring_the_original_brings_back_the_kernel_default(
    mech: NetworkMechanism, veth_netns: Any, apply: Callable
) -> None:
    writes = apply(mech, spec(veth_netns, HTB, TBF))
    for write in reversed(writes):
        mech.write(write.inverse())
    view = kernel_view(veth_netns)
    assert view[veth_netns.a] == {"kind": "noqueue", "major": 0}  # what a veth has by default
    assert view[veth_netns.b] == {"kind": "noqueue", "major": 0}
    assert mech.read([w.key for w in writes]) == {w.key: None for w in writes}
    assert (
        apply(mech, {"interfaces": [{"name": veth_netns.a, "netns": veth_netns.name, "remove": True}]}) == []
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"htb": {"default_class": 16, "classes": [{"minor": 16, "rate": "10 mbit"}]}},
        {"htb": {"default_class": 16, "classes": [{"minor": 16, "rate": "2mbit", "ceil": "1mbit"}]}},
        {"tbf": {"rate": "fast", "burst": "32kb", "latency": "50ms"}},
        {"name": "nosuch0", "tbf": TBF["tbf"]},
    ],
)
def test_bad_input_changes_nothing(
    mech: NetworkMechanism, veth_netns: Any, bad: dict[str, Any], apply: Callable
) -> None:
    apply(mech, spec(veth_netns, HTB))
    before = (kernel_view(veth_netns), tc_json(veth_netns, "qdisc", "show"))
    section = spec(veth_netns, TBF, bad)  # a good first entry must not be written either
    with pytest.raises(InvalidSpec):
        mech.validate(section, "network")
    assert (kernel_view(veth_netns), tc_json(veth_netns, "qdisc", "show")) == before


def test_a_foreign_root_qdisc_is_refused_and_left_alone(mech: NetworkMechanism, veth_netns: Any) -> None:
    veth_netns.tc("qdisc", "add", "dev", veth_netns.a, "root", "handle", "1:", "htb", "default", "10")
    with pytest.raises(InvalidSpec) as raised:
        mech.validate(spec(veth_netns, TBF), "network")
    assert raised.value.field == "network.interfaces[0]"
    assert "htb 1: not set up by mlsysops" in raised.value.reason
    assert kernel_view(veth_netns)[veth_netns.a] == {"kind": "htb", "major": 1, "default": 16}


def test_unknown_namespace_and_interface_are_named(mech: NetworkMechanism, veth_netns: Any) -> None:
    with pytest.raises(InvalidSpec) as raised:
        mech.validate({"interfaces": [{"name": "x0", "netns": f"{veth_netns.name}-nope", **TBF}]}, "network")
    assert raised.value.field == "network.interfaces[0].netns"
    with pytest.raises(InvalidSpec) as raised:
        mech.validate({"interfaces": [{"name": "x0", "netns": veth_netns.name, **TBF}]}, "network")
    assert raised.value.field == "network.interfaces[0].name"


def test_a_recreated_namespace_is_not_served_by_a_stale_socket(
    mech: NetworkMechanism, veth_netns: Any, apply: Callable
) -> None:
    apply(mech, spec(veth_netns, HTB))
    subprocess.run(["ip", "netns", "del", veth_netns.name], check=True, timeout=30)
    subprocess.run(["ip", "netns", "add", veth_netns.name], check=True, timeout=30)
    veth_netns.ip("link", "add", veth_netns.a, "type", "veth", "peer", "name", veth_netns.b)
    key = f"{veth_netns.name}/{veth_netns.a}/root"
    assert mech.read([key]) == {key: None}
    assert len(apply(mech, spec(veth_netns, TBF))) == 1
    assert kernel_view(veth_netns)[veth_netns.a]["kind"] == "tbf"


def test_the_agents_own_namespace_is_addressed_as_dash(mech: NetworkMechanism) -> None:
    # read-only on purpose: tests never write to the host's interfaces
    plan = mech.validate({"interfaces": [{"name": "lo", "remove": True}]}, "network")
    assert plan.desired == {"-/lo/root": None}
    assert mech.read(["-/lo/root"]) == {"-/lo/root": None}  # loopback runs the kernel default


def _host_roots() -> dict[str, tuple[str, str]]:
    """Root qdisc per interface of the agent's (host) namespace: probing must not change them."""
    out = subprocess.run(
        ["tc", "-j", "qdisc", "show"], check=True, capture_output=True, text=True, timeout=30
    )
    return {q["dev"]: (q["kind"], q["handle"]) for q in json.loads(out.stdout) if q.get("root")}


def _kernel_has(command: list[str]) -> bool:
    return subprocess.run(command, capture_output=True, timeout=30).returncode == 0


def test_probe_reports_what_the_kernel_really_supports(mech: NetworkMechanism, veth_netns: Any) -> None:
    host_before = _host_roots()
    caps = mech.probe()
    assert caps.available
    features = {f["name"]: f for f in (caps.details or {})["features"]}
    ns = veth_netns.name
    oracle = {
        "qdisc/netem": _kernel_has(["tc", "-n", ns, "qdisc", "add", "dev", "lo", "root", "netem"]),
        "link/dummy": _kernel_has(["ip", "-n", ns, "link", "add", "mltdum", "type", "dummy"]),
        "qdisc/htb": True,
        "qdisc/tbf": True,
        "link/veth": True,
    }
    for name, supported in oracle.items():
        assert features[name]["supported"] is supported, features[name]
        if not supported:
            assert "this kernel has no" in features[name]["reason"]
    host_after = _host_roots()
    common = host_before.keys() & host_after.keys()
    assert common and {d: host_after[d] for d in common} == {d: host_before[d] for d in common}


def test_probe_lists_the_interfaces_of_each_namespace(
    mech: NetworkMechanism, veth_netns: Any, apply: Callable
) -> None:
    apply(mech, spec(veth_netns, HTB))
    details = mech.probe().details or {}
    ours = {i["name"]: i for i in details["interfaces"] if i["netns"] == veth_netns.name}
    assert set(ours) == {"lo", veth_netns.a, veth_netns.b}
    assert ours[veth_netns.a]["root_qdisc"] == "htb"
    assert ours[veth_netns.a]["mtu"] == 1500 and ours[veth_netns.a]["state"] == "up"
    assert ours["lo"]["index"] == 1
    assert veth_netns.name in details["namespaces"]
    assert any(i["netns"] == "" and i["name"] == "lo" for i in details["interfaces"])


class FailingDeletes:
    """The real adapter, except that deleting a class fails: a write that breaks half-way."""

    def __init__(self, real: NetlinkHost) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def delete_htb_class(self, netns: str, ifname: str, major: int, minor: int) -> None:
        raise HostError(f"{netns}/{ifname}", "injected failure", errno.EIO)


def test_a_write_failing_half_way_leaves_the_kernel_as_before(veth_netns: Any, apply: Callable) -> None:
    real = NetlinkHost("/run/netns")
    context = MechanismContext(fs=HostFS("/"), netns_dir="/run/netns", netlink=FailingDeletes(real))
    mech = NetworkMechanism(context)
    try:
        apply(mech, spec(veth_netns, HTB))
        before = kernel_view(veth_netns)
        smaller = {"htb": {"default_class": 16, "classes": [{"minor": 16, "rate": "1mbit"}]}}
        with pytest.raises(HostError, match="injected"):
            apply(mech, spec(veth_netns, smaller))  # replaces class 16, then fails to delete 32
        assert kernel_view(veth_netns) == before
    finally:
        real.close()
