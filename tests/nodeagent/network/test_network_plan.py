"""Planning and writing over an in-memory netlink: read, compare, write only what differs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from nodeagent.errors import HostError
from nodeagent.host.netvalues import Qdisc
from nodeagent.mechanisms.base import Mechanism, Write
from nodeagent.mechanisms.network import HTB_MAJOR, TBF_MAJOR, NetworkMechanism

HTB = {
    "default_class": 10,
    "classes": [{"minor": 10, "rate": "10mbit", "ceil": "20mbit"}, {"minor": 20, "rate": "1mbit"}],
}
TBF = {"rate": "1mbit", "burst": "32kb", "latency": "50ms"}


def section(**roots: dict[str, Any] | None) -> dict[str, Any]:
    """{"veth0": {...htb...}} style shorthand; a None root means remove."""
    interfaces = []
    for name, root in roots.items():
        entry: dict[str, Any] = {"name": name, "netns": "demo"}
        if root is None:
            entry["remove"] = True
        else:
            entry["htb" if "classes" in root else "tbf"] = root
        interfaces.append(entry)
    return {"interfaces": interfaces}


@pytest.fixture
def mech(fake_netlink: Any, make_mechanism: Callable) -> NetworkMechanism:
    return make_mechanism(fake_netlink)


def test_it_implements_the_mechanism_protocol(mech: NetworkMechanism) -> None:
    assert isinstance(mech, Mechanism)
    assert mech.name == "network"


def test_first_apply_builds_the_tree_and_a_second_writes_nothing(
    mech: NetworkMechanism, fake_netlink: Any, apply: Callable
) -> None:
    writes = apply(mech, section(veth0=HTB, veth1=TBF))
    assert [(w.key, w.before) for w in writes] == [("demo/veth0/root", None), ("demo/veth1/root", None)]
    assert fake_netlink.calls == [
        ("replace_htb_root", "demo", "veth0", 10),
        ("replace_htb_class", "demo", "veth0", 10),
        ("replace_htb_class", "demo", "veth0", 20),
        ("replace_tbf_root", "demo", "veth1", 125_000),
    ]
    fake_netlink.calls.clear()
    assert apply(mech, section(veth0=HTB, veth1=TBF)) == []
    assert fake_netlink.calls == []


def test_a_whole_profile_is_read_in_one_batch_per_namespace(
    mech: NetworkMechanism, fake_netlink: Any
) -> None:
    desired = mech.validate(section(veth0=HTB, veth1=TBF), "network").desired
    assert fake_netlink.reads == 1
    mech.read([*desired, "-/eth0/root"])
    assert fake_netlink.reads == 3  # one for "demo", one for the agent's namespace


def test_reading_back_gives_exactly_the_validated_values(mech: NetworkMechanism, apply: Callable) -> None:
    desired = mech.validate(section(veth0=HTB, veth1=TBF), "network").desired
    apply(mech, section(veth0=HTB, veth1=TBF))
    assert mech.read(desired) == desired


def test_changing_one_class_replaces_it_and_drops_the_unwanted(
    mech: NetworkMechanism, fake_netlink: Any, apply: Callable
) -> None:
    apply(mech, section(veth0=HTB))
    fake_netlink.calls.clear()
    changed = {"default_class": 10, "classes": [{"minor": 10, "rate": "10mbit", "ceil": "40mbit"}]}
    apply(mech, section(veth0=changed))
    assert fake_netlink.calls == [
        ("replace_htb_class", "demo", "veth0", 10),
        ("delete_htb_class", "demo", "veth0", 20),
    ]


def test_a_new_default_class_recreates_the_htb(
    mech: NetworkMechanism, fake_netlink: Any, apply: Callable
) -> None:
    apply(mech, section(veth0=HTB))
    fake_netlink.calls.clear()
    apply(mech, section(veth0={**HTB, "default_class": 20}))
    assert [c[0] for c in fake_netlink.calls] == [
        "delete_root",
        "replace_htb_root",
        "replace_htb_class",
        "replace_htb_class",
    ]
    assert fake_netlink.ifaces[("demo", "veth0")].root.params == {"default": 20}


def test_switching_kinds_grafts_without_a_gap(
    mech: NetworkMechanism, fake_netlink: Any, apply: Callable
) -> None:
    apply(mech, section(veth0=HTB))
    fake_netlink.calls.clear()
    apply(mech, section(veth0=TBF))
    assert [c[0] for c in fake_netlink.calls] == ["replace_tbf_root"]
    root = fake_netlink.ifaces[("demo", "veth0")].root
    assert (root.kind, root.handle >> 16) == ("tbf", TBF_MAJOR)
    fake_netlink.calls.clear()
    apply(mech, section(veth0=HTB))
    assert [c[0] for c in fake_netlink.calls] == [
        "replace_htb_root",
        "replace_htb_class",
        "replace_htb_class",
    ]


def test_restoring_the_original_none_deletes_our_root(
    mech: NetworkMechanism, fake_netlink: Any, apply: Callable
) -> None:
    (write,) = apply(mech, section(veth1=TBF))
    mech.write(write.inverse())
    assert fake_netlink.calls[-1] == ("delete_root", "demo", "veth1", TBF_MAJOR << 16)
    assert mech.read(["demo/veth1/root"]) == {"demo/veth1/root": None}
    mech.write(write.inverse())  # idempotent: already the kernel default
    assert fake_netlink.calls[-1][0] == "delete_root" and len(fake_netlink.calls) == 2


def test_remove_plans_nothing_when_the_default_is_there(mech: NetworkMechanism, apply: Callable) -> None:
    assert apply(mech, section(veth0=None)) == []


def test_a_failed_write_puts_the_previous_tree_back(
    mech: NetworkMechanism, fake_netlink: Any, apply: Callable
) -> None:
    apply(mech, section(veth0=HTB))
    before = mech.read(["demo/veth0/root"])
    fake_netlink.fail = "delete_htb_class"
    with pytest.raises(HostError, match="injected"):
        apply(mech, section(veth0={"default_class": 10, "classes": [{"minor": 10, "rate": "5mbit"}]}))
    fake_netlink.fail = None
    assert mech.read(["demo/veth0/root"]) == before


def test_writes_never_touch_a_foreign_root(mech: NetworkMechanism, fake_netlink: Any) -> None:
    desired = mech.validate(section(veth0=TBF), "network").desired
    fake_netlink.ifaces[("demo", "veth0")].root = Qdisc("fq_codel", 0x10000, {})
    (key,) = desired
    assert mech.read([key]) == {key: '{"foreign":true,"handle":"1:","kind":"fq_codel"}'}
    with pytest.raises(HostError, match="not ours; leaving it alone"):
        mech.write(Write("network", key, None, desired[key]))
    with pytest.raises(HostError, match="not ours"):
        mech.write(Write("network", key, None, None))
    with pytest.raises(HostError, match="cannot recreate fq_codel"):
        mech.write(Write("network", key, None, '{"foreign":true,"handle":"1:","kind":"fq_codel"}'))
    assert fake_netlink.calls == []


def test_a_root_with_our_handle_but_another_kind_is_foreign(
    mech: NetworkMechanism, fake_netlink: Any
) -> None:
    fake_netlink.ifaces[("demo", "veth0")].root = Qdisc("tbf", HTB_MAJOR << 16, {})
    assert '"foreign":true' in str(mech.read(["demo/veth0/root"])["demo/veth0/root"])


def test_bad_keys_and_values_are_host_errors(mech: NetworkMechanism) -> None:
    with pytest.raises(HostError, match="not a network knob"):
        mech.read(["veth0"])
    with pytest.raises(HostError, match="not a root qdisc value"):
        mech.write(Write("network", "demo/veth0/root", None, '{"kind":"prio"}'))


def test_a_vanished_namespace_reads_as_absent(mech: NetworkMechanism) -> None:
    assert mech.read(["gone/veth0/root"]) == {"gone/veth0/root": None}


def test_probe_reports_features_and_interfaces_per_namespace(
    mech: NetworkMechanism, fake_netlink: Any
) -> None:
    caps = mech.probe()
    assert caps.available
    details = caps.details or {}
    features = {f["name"]: f for f in details["features"]}
    assert features["qdisc/netem"] == {
        "name": "qdisc/netem",
        "supported": False,
        "reason": "missing",
        "probed": True,
    }
    assert features["link/dummy"]["supported"] is False
    assert features["qdisc/htb"]["supported"] and features["link/veth"]["supported"]
    assert {(i["netns"], i["name"]) for i in details["interfaces"]} == {
        ("", "eth0"),
        ("demo", "veth0"),
        ("demo", "veth1"),
    }
    eth0 = next(i for i in details["interfaces"] if i["name"] == "eth0")
    assert eth0 == {
        "name": "eth0",
        "netns": "",
        "index": 1,
        "state": "up",
        "mtu": 9000,
        "root_qdisc": "noqueue",
    }
    assert details["namespaces"] == ["demo"]
    assert details["handles"] == {"htb": "6d6c:", "tbf": "6d6d:"}


def test_probe_says_why_when_no_shaping_qdisc_exists(fake_netlink: Any, make_mechanism: Callable) -> None:
    fake_netlink.unsupported |= {"qdisc/htb", "qdisc/tbf"}
    caps = make_mechanism(fake_netlink).probe()
    assert not caps.available
    assert "neither sch_htb nor sch_tbf" in caps.reason


def test_the_shaping_qdiscs_are_always_probed(fake_netlink: Any, make_mechanism: Callable) -> None:
    caps = make_mechanism(fake_netlink, qdisc_kinds=["netem"], link_kinds=[]).probe()
    assert [f["name"] for f in (caps.details or {})["features"]] == ["qdisc/htb", "qdisc/tbf", "qdisc/netem"]


def test_a_probe_that_could_not_run_does_not_block_requests(
    fake_netlink: Any, make_mechanism: Callable
) -> None:
    fake_netlink.probe_runs = False
    mech = make_mechanism(fake_netlink)
    caps = mech.probe()
    assert not caps.available  # nothing is known to work...
    assert caps.reason == "not probed"
    assert mech.validate(section(veth1=TBF), "network").desired  # ...but nothing is known to fail either


def test_order_keeps_the_plan(mech: NetworkMechanism) -> None:
    writes = [Write("network", f"demo/veth{i}/root", None, None) for i in (1, 0)]
    assert mech.order(writes) == writes


def test_kernel_features_are_probed_once_while_interfaces_are_listed_every_time(
    fake_netlink: Any, make_mechanism: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, ...]] = []
    probe_features = fake_netlink.probe_features
    monkeypatch.setattr(
        fake_netlink, "probe_features", lambda q, links: calls.append(tuple(q)) or probe_features(q, links)
    )
    mech = make_mechanism(fake_netlink)
    mech.probe()
    fake_netlink.add("demo", "veth2")
    details = mech.probe().details
    assert len(calls) == 1
    assert "veth2" in {i["name"] for i in details["interfaces"]}


def test_a_feature_probe_that_could_not_run_is_tried_again(
    fake_netlink: Any, make_mechanism: Callable
) -> None:
    fake_netlink.probe_runs = False
    mech = make_mechanism(fake_netlink)
    assert not any(f["probed"] for f in mech.probe().details["features"])
    fake_netlink.probe_runs = True
    assert all(f["probed"] for f in mech.probe().details["features"])
