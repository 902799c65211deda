"""Validation: every bad request names the exact field and the reason, and nothing is written."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from nodeagent.errors import InvalidSpec
from nodeagent.host.netvalues import Qdisc
from nodeagent.mechanisms.netspec import Target

GOOD: dict[str, Any] = {
    "interfaces": [
        {
            "name": "veth0",
            "netns": "demo",
            "htb": {
                "default_class": 10,
                "classes": [
                    {"minor": 10, "rate": "10mbit", "ceil": "20mbit"},
                    {"minor": 20, "rate": "1mbit"},
                ],
            },
        },
        {"name": "veth1", "netns": "demo", "tbf": {"rate": "1mbit", "burst": "32kb", "latency": "50ms"}},
        {"name": "eth0", "remove": True},
    ]
}


def with_change(path: list[Any], value: Any) -> dict[str, Any]:
    """GOOD with one field replaced (or deleted when value is DELETE)."""
    spec = copy.deepcopy(GOOD)
    node = spec
    for part in path[:-1]:
        node = node[part]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return spec


DELETE = object()
I0, I1 = ["interfaces", 0], ["interfaces", 1]
C1 = [*I0, "htb", "classes", 1]


def test_a_good_section_yields_one_canonical_knob_per_interface(
    fake_netlink: Any, make_mechanism: Callable
) -> None:
    desired = make_mechanism(fake_netlink).validate(GOOD, "network").desired
    assert desired == {
        "demo/veth0/root": '{"classes":[{"ceil":"20mbit","minor":10,"rate":"10mbit"},'
        '{"ceil":"1mbit","minor":20,"rate":"1mbit"}],"default_class":10,"kind":"htb"}',
        "demo/veth1/root": '{"burst":"32kb","kind":"tbf","latency":"50ms","rate":"1mbit"}',
        "-/eth0/root": None,
    }
    assert fake_netlink.calls == []


def test_equivalent_spellings_give_identical_knobs(fake_netlink: Any, make_mechanism: Callable) -> None:
    spelled = with_change([*C1, "rate"], "125000bps")
    spelled["interfaces"][0]["htb"]["classes"][0]["ceil"] = "20000KBIT"
    mech = make_mechanism(fake_netlink)
    assert mech.validate(spelled, "network").desired == mech.validate(GOOD, "network").desired


@pytest.mark.parametrize(
    ("spec", "field", "reason"),
    [
        (with_change([*C1, "rate"], "10 mbit"), "network.interfaces[0].htb.classes[1].rate", "whitespace"),
        (with_change([*C1, "rate"], "-1kbit"), "network.interfaces[0].htb.classes[1].rate", "negative"),
        (with_change([*C1, "rate"], "fast"), "network.interfaces[0].htb.classes[1].rate", "not a rate"),
        (with_change([*C1, "rate"], "0mbit"), "network.interfaces[0].htb.classes[1].rate", "below 8bit"),
        (with_change([*C1, "rate"], "100tbit"), "network.interfaces[0].htb.classes[1].rate", "typo"),
        (with_change([*C1, "rate"], DELETE), "network.interfaces[0].htb.classes[1].rate", "empty"),
        (
            with_change([*C1, "ceil"], "512kbit"),
            "network.interfaces[0].htb.classes[1].ceil",
            "below the rate",
        ),
        (with_change([*C1, "minor"], 10), "network.interfaces[0].htb.classes[1].minor", "used by another"),
        (with_change([*C1, "minor"], 0), "network.interfaces[0].htb.classes[1].minor", "outside 1..65535"),
        (with_change([*C1, "minor"], 70000), "network.interfaces[0].htb.classes[1].minor", "outside"),
        (with_change([*C1, "minor"], "20"), "network.interfaces[0].htb.classes[1].minor", "integer"),
        (with_change([*C1, "minor"], True), "network.interfaces[0].htb.classes[1].minor", "integer"),
        (with_change([*C1, "prio"], 1), "network.interfaces[0].htb.classes[1].prio", "unknown field"),
        (
            with_change([*I0, "htb", "default_class"], 30),
            "network.interfaces[0].htb.default_class",
            "not among",
        ),
        (
            with_change([*I0, "htb", "default_class"], DELETE),
            "network.interfaces[0].htb.default_class",
            "0 is",
        ),
        (with_change([*I0, "htb", "classes"], []), "network.interfaces[0].htb.classes", "at least one"),
        (with_change([*I0, "htb", "classes"], "x"), "network.interfaces[0].htb.classes", "must be a list"),
        (with_change([*I1, "tbf", "rate"], "40gbit"), "network.interfaces[1].tbf.rate", "limited to"),
        (with_change([*I1, "tbf", "burst"], "lots"), "network.interfaces[1].tbf.burst", "not a size"),
        (with_change([*I1, "tbf", "latency"], DELETE), "network.interfaces[1].tbf.latency", "empty"),
        (with_change([*I1, "tbf", "latency"], "1min"), "network.interfaces[1].tbf.latency", "unknown unit"),
        (
            with_change([*I1, "tbf", "latency"], "20s"),
            "network.interfaces[1].tbf.latency",
            "outside 1us..10s",
        ),
        (with_change([*I1, "tbf", "burst"], "1kb"), "network.interfaces[1].tbf.burst", "below the MTU"),
        (with_change([*I1, "tbf", "burst"], "1gb"), "network.interfaces[1].tbf.burst", "longer than"),
        (with_change([*I1, "htb"], {"default_class": 1}), "network.interfaces[1].tbf", "exclusive"),
        (with_change([*I1, "remove"], True), "network.interfaces[1].remove", "contradicts tbf"),
        (with_change([*I1, "tbf"], DELETE), "network.interfaces[1]", "needs one of htb, tbf or remove"),
        (with_change([*I1, "name"], "veth0"), "network.interfaces[1].name", "already shaped by"),
        (with_change([*I1, "name"], "veth9"), "network.interfaces[1].name", "no interface 'veth9'"),
        (with_change([*I1, "name"], "a/b"), "network.interfaces[1].name", "not a valid interface name"),
        (with_change([*I1, "name"], "x" * 16), "network.interfaces[1].name", "not a valid interface name"),
        (with_change([*I1, "name"], DELETE), "network.interfaces[1].name", "required"),
        (with_change([*I1, "netns"], "nope"), "network.interfaces[1].netns", "no network namespace 'nope'"),
        (with_change([*I1, "netns"], "-"), "network.interfaces[1].netns", "not a valid namespace"),
        (with_change([*I1, "netns"], "../etc"), "network.interfaces[1].netns", "not a valid namespace"),
        (
            with_change(["interfaces", 2, "name"], "veth0"),
            "network.interfaces[2].name",
            "no interface 'veth0'",
        ),
        (with_change(["interfaces", 2, "remove"], "yes"), "network.interfaces[2].remove", "true or false"),
        (with_change(["interfaces"], {"a": 1}), "network.interfaces", "must be a list"),
        (with_change(["shaping"], []), "network.shaping", "unknown field"),
        (with_change(["interfaces", 1], "veth1"), "network.interfaces[1]", "must be an object"),
    ],
)
def test_bad_input_names_the_field_and_reason(
    fake_netlink: Any, make_mechanism: Callable, spec: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(InvalidSpec) as raised:
        make_mechanism(fake_netlink).validate(spec, "network")
    assert raised.value.field == field
    assert reason in raised.value.reason
    assert fake_netlink.calls == []


def test_an_unsupported_qdisc_kind_is_rejected_with_the_probe_reason(
    fake_netlink: Any, make_mechanism: Callable
) -> None:
    fake_netlink.unsupported.add("qdisc/tbf")
    with pytest.raises(InvalidSpec) as raised:
        make_mechanism(fake_netlink).validate(GOOD, "network")
    assert raised.value.field == "network.interfaces[1].tbf"
    assert "unsupported on this node: missing" in raised.value.reason


def test_a_foreign_root_qdisc_is_never_taken_over(fake_netlink: Any, make_mechanism: Callable) -> None:
    fake_netlink.ifaces[("demo", "veth1")].root = Qdisc("fq_codel", 0x80010000, {})
    with pytest.raises(InvalidSpec) as raised:
        make_mechanism(fake_netlink).validate(GOOD, "network")
    assert raised.value.field == "network.interfaces[1]"
    assert "fq_codel 8001: not set up by mlsysops" in raised.value.reason
    assert "tc qdisc del dev veth1 root" in raised.value.reason


def test_the_kernel_default_root_is_not_foreign(fake_netlink: Any, make_mechanism: Callable) -> None:
    fake_netlink.ifaces[("demo", "veth1")].root = Qdisc("mq", 0, {})
    assert make_mechanism(fake_netlink).validate(GOOD, "network").desired["demo/veth1/root"] is not None


def test_an_empty_section_means_no_knobs(fake_netlink: Any, make_mechanism: Callable) -> None:
    assert make_mechanism(fake_netlink).validate({}, "network").desired == {}


def test_knob_keys_round_trip_and_reject_other_shapes() -> None:
    assert Target.from_key("demo/veth0/root") == Target("demo", "veth0")
    assert Target.from_key("-/eth0/root") == Target("", "eth0")
    assert Target("", "eth0").key == "-/eth0/root"
    for bad in ("demo/veth0", "demo/veth0/class", "/veth0/root", "a/b/c/root"):
        with pytest.raises(ValueError, match="not a network knob"):
            Target.from_key(bad)


def test_bad_options_are_refused_at_construction(fake_netlink: Any, make_mechanism: Callable) -> None:
    with pytest.raises(InvalidSpec) as raised:
        make_mechanism(fake_netlink, qdisc_kind=["htb"])
    assert raised.value.field == "qdisc_kind"
    with pytest.raises(InvalidSpec, match="list of kind names"):
        make_mechanism(fake_netlink, qdisc_kinds="htb")


ROUTES = (
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
    "eth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
    "eth0\t0002A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n"
)


def test_the_default_route_interface_is_protected_unless_allowed(
    fake_netlink: Any, make_mechanism: Callable, tmp_path: Any
) -> None:
    """Issue 11, defect 7: a profile must not shape the node's management path to 1 bit/s."""
    (tmp_path / "proc" / "net").mkdir(parents=True)
    (tmp_path / "proc" / "net" / "route").write_text(ROUTES)
    htb = {"default_class": 1, "classes": [{"minor": 1, "rate": "8bit"}]}
    shaping = {"interfaces": [{"name": "eth0", "htb": htb}]}
    with pytest.raises(InvalidSpec) as err:
        make_mechanism(fake_netlink).validate(shaping, "network")
    assert err.value.field == "network.interfaces[0].name" and "default route" in err.value.reason
    removing = {"interfaces": [{"name": "eth0", "remove": True}]}  # back to the kernel's default: fine
    assert make_mechanism(fake_netlink).validate(removing, "network")
    allowed = make_mechanism(fake_netlink, allow_interfaces=["eth0"]).validate(shaping, "network")
    assert list(allowed.desired) == ["-/eth0/root"]
