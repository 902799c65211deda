"""The netlink adapter on its own: errors are HostErrors with errno, calls work from anywhere."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nodeagent.errors import HostError
from nodeagent.host.netlink import NetlinkHost
from nodeagent.host.netvalues import HtbClassParams, TbfParams

MAJOR = 0x7E57


@pytest.fixture
def host(veth_netns: Any) -> Iterator[NetlinkHost]:
    adapter = NetlinkHost("/run/netns")
    try:
        yield adapter
    finally:
        adapter.close()


def classes(host: NetlinkHost, ns: Any) -> tuple[HtbClassParams, ...]:
    return host.roots(ns.name, [ns.a], MAJOR)[ns.a].classes


def test_roots_reports_links_qdiscs_and_only_the_asked_classes(host: NetlinkHost, veth_netns: Any) -> None:
    host.replace_htb_root(veth_netns.name, veth_netns.a, MAJOR, 1)
    host.replace_htb_class(veth_netns.name, veth_netns.a, MAJOR, HtbClassParams(1, 125_000, 125_000, 1, 1))
    states = host.roots(veth_netns.name, [veth_netns.a, veth_netns.b, "nosuch0"], MAJOR)
    assert set(states) == {veth_netns.a, veth_netns.b}
    a, b = states[veth_netns.a], states[veth_netns.b]
    assert (a.link.name, a.link.mtu, a.link.state) == (veth_netns.a, 1500, "up")
    assert [c.minor for c in a.classes] == [1]
    assert b.qdisc is not None and (b.qdisc.kind, b.qdisc.handle) == ("noqueue", 0)
    assert host.roots(veth_netns.name, [veth_netns.a], None)[veth_netns.a].classes == ()


def test_missing_namespace_and_interface_are_host_errors_with_errno(
    host: NetlinkHost, veth_netns: Any
) -> None:
    with pytest.raises(HostError) as raised:
        host.links(f"{veth_netns.name}-missing")
    assert raised.value.errno == errno.ENOENT
    assert "no such network namespace" in str(raised.value)
    with pytest.raises(HostError) as raised:
        host.replace_tbf_root(veth_netns.name, "nosuch0", MAJOR, TbfParams(125_000, 4_096_000, 40_000))
    assert raised.value.errno == errno.ENODEV
    assert host.roots(veth_netns.name, ["nosuch0"], MAJOR) == {}


def test_kernel_refusals_carry_the_kernel_message(host: NetlinkHost, veth_netns: Any) -> None:
    with pytest.raises(HostError) as raised:  # a class needs its qdisc first
        host.replace_htb_class(
            veth_netns.name, veth_netns.a, MAJOR, HtbClassParams(1, 125_000, 125_000, 1, 1)
        )
    assert raised.value.errno is not None and raised.value.errno > 0
    assert f"{veth_netns.name}/{veth_netns.a}/class 7e57:1" in str(raised.value)


def test_class_deletion_is_idempotent(host: NetlinkHost, veth_netns: Any) -> None:
    host.replace_htb_root(veth_netns.name, veth_netns.a, MAJOR, 1)
    host.replace_htb_class(
        veth_netns.name, veth_netns.a, MAJOR, HtbClassParams(1, 125_000, 250_000, 20_000, 10_000)
    )
    assert [c.minor for c in classes(host, veth_netns)] == [1]
    host.delete_htb_class(veth_netns.name, veth_netns.a, MAJOR, 1)
    host.delete_htb_class(veth_netns.name, veth_netns.a, MAJOR, 1)
    assert classes(host, veth_netns) == ()
    root = host.roots(veth_netns.name, [veth_netns.a], MAJOR)[veth_netns.a].qdisc
    assert root is not None and (root.kind, root.handle, root.params) == ("htb", MAJOR << 16, {"default": 1})


def test_class_parameters_round_trip_through_the_kernel(host: NetlinkHost, veth_netns: Any) -> None:
    sent = HtbClassParams(5, 1_250_000, 5_000_000, 20_000, 5_000, 3_000)
    host.replace_htb_root(veth_netns.name, veth_netns.a, MAJOR, 5)
    host.replace_htb_class(veth_netns.name, veth_netns.a, MAJOR, sent)
    assert classes(host, veth_netns) == (sent,)


def test_usable_from_a_coroutine_and_from_many_threads(host: NetlinkHost, veth_netns: Any) -> None:
    async def from_event_loop() -> int:
        return len(host.links(veth_netns.name))

    assert asyncio.run(from_event_loop()) == 3  # lo and the veth pair
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(len(host.links(veth_netns.name)))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [3, 3, 3, 3]


def test_a_closed_adapter_says_so(veth_netns: Any) -> None:
    adapter = NetlinkHost("/run/netns")
    adapter.links(veth_netns.name)
    adapter.close()
    with pytest.raises(HostError, match="closed"):
        adapter.links(veth_netns.name)


def test_probing_leaves_no_namespace_behind(veth_netns: Any, tmp_path: Path) -> None:
    adapter = NetlinkHost(str(tmp_path))
    try:
        features = adapter.probe_features(["htb", "nosuchqdisc"], ["veth", "nosuchlink"])
    finally:
        adapter.close()
    supported = {f.name: f.supported for f in features}
    assert supported == {
        "qdisc/htb": True,
        "qdisc/nosuchqdisc": False,
        "link/veth": True,
        "link/nosuchlink": False,
    }
    assert os.listdir(tmp_path) == []
    assert adapter.namespaces() == []


def test_lookups_leave_no_replies_behind(host: NetlinkHost, veth_netns: Any) -> None:
    """Regression: pyroute2's link_lookup() left one ACK per call in its socket's orphan
    queue, which grew a long-running agent without bound; every answer is read now."""
    for _ in range(50):
        host.roots(veth_netns.name, [veth_netns.a], MAJOR)
        host.delete_htb_class(veth_netns.name, veth_netns.a, MAJOR, 1)

    def unread() -> bool:
        sock = host._conns[veth_netns.name][1]
        try:
            sock.recv(1 << 16, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        return True

    assert host._worker.submit(unread).result() is False


def test_an_interface_recreated_after_roots_is_written_by_its_new_index(
    host: NetlinkHost, veth_netns: Any
) -> None:
    """Writes use the index roots() saw (one lookup fewer each); an interface deleted and created
    again under the same name since (a new index) is still the one written, not an error."""
    old = host.roots(veth_netns.name, [veth_netns.a], MAJOR)[veth_netns.a].link.index
    veth_netns.ip("link", "del", veth_netns.a)
    veth_netns.ip("link", "add", veth_netns.a, "type", "veth", "peer", "name", veth_netns.b)
    host.replace_htb_root(veth_netns.name, veth_netns.a, MAJOR, 1)
    state = host.roots(veth_netns.name, [veth_netns.a], MAJOR)[veth_netns.a]
    assert state.link.index != old
    assert state.qdisc is not None and (state.qdisc.kind, state.qdisc.handle) == ("htb", MAJOR << 16)


def test_a_renamed_interface_is_not_written_under_its_old_name(host: NetlinkHost, veth_netns: Any) -> None:
    host.roots(veth_netns.name, [veth_netns.a], MAJOR)
    veth_netns.ip("link", "set", veth_netns.a, "down")
    veth_netns.ip("link", "set", veth_netns.a, "name", "renamed0")
    assert host.roots(veth_netns.name, [veth_netns.a], MAJOR) == {}  # seen gone: forgotten
    with pytest.raises(HostError) as raised:
        host.replace_htb_root(veth_netns.name, veth_netns.a, MAJOR, 1)
    assert raised.value.errno == errno.ENODEV
    renamed = host.roots(veth_netns.name, ["renamed0"], MAJOR)["renamed0"]
    assert renamed.qdisc is None or renamed.qdisc.kind != "htb"


def test_a_probe_child_that_cannot_run_reports_features_not_probed(monkeypatch: pytest.MonkeyPatch) -> None:
    from nodeagent.host import netlink

    monkeypatch.setattr(netlink.sys, "executable", "/nonexistent/python")
    features = netlink.probe_in_child(["htb"], ["veth"])
    assert [(f.name, f.supported, f.probed) for f in features] == [
        ("qdisc/htb", False, False), ("link/veth", False, False)
    ]
    assert all("the probe process failed" in f.reason for f in features)
