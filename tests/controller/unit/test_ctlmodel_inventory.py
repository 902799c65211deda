"""Inventory from descriptions and from node agents (their GetInventory), merged."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from controller.inventory import AgentError, Inventory, fetch_inventory, from_agents, node_document_from_agent
from controller.model import NodeDesc, parse_document
from mlsysops.nodeconfig.v1 import nodeconfig_pb2

NodeDoc = Callable[..., dict[str, Any]]


def agent_inventory(name: str = "worker-7") -> nodeconfig_pb2.Inventory:
    """What a node agent on a 4-core arm64 board with two far-edge devices reports."""
    cpu = dict(
        cpufreq_available=True,
        available_governors=["performance", "powersave"],
        available_frequencies_khz=[800_000, 2_400_000],
        cpuinfo_min_khz=800_000,
        cpuinfo_max_khz=2_400_000,
    )
    return nodeconfig_pb2.Inventory(
        node_name=name,
        api_version="mlsysops.nodeconfig.v1",
        agent_version="0.1.0",
        architecture="aarch64",
        memory_bytes=6 * 2**30 + 12345,
        cpus=[nodeconfig_pb2.Cpu(id=i, **cpu) for i in range(4)],
        cgroup=nodeconfig_pb2.CgroupInfo(
            version="v2",
            root="mlsysops",
            controllers=[nodeconfig_pb2.CgroupController(name="cpu", version="v2")],
        ),
        runtimes=[
            nodeconfig_pb2.Runtime(handler="runc", available=True, version="1.1", runtime_class_name="runc"),
            nodeconfig_pb2.Runtime(handler="kata-fc", available=False, reason="no /dev/kvm"),
        ],
        devices=[
            nodeconfig_pb2.Device(
                id="esp32-1",
                kind="esp32",
                transport="mqtt",
                online=True,
                sensors=["temperature"],
                attributes={"room": "lab"},
            ),
            nodeconfig_pb2.Device(
                id="pico-1", kind="rp2040", transport="serial", online=False, sensors=["camera"]
            ),
        ],
    )


def test_cluster_membership_comes_from_cluster_descriptions(node_doc: NodeDoc) -> None:
    docs = [
        parse_document(node_doc("n1")),
        parse_document(node_doc("n2", cluster_id="own")),
        parse_document({"MLSysOpsCluster": {"cluster_id": "c1", "nodes": ["n1", "n2"]}}),
    ]
    inv = Inventory.from_descriptions(docs)
    assert {n.name: n.cluster for n in inv.nodes} == {"n1": "c1", "n2": "own"}
    assert [c.cluster_id for c in inv.clusters] == ["c1"]


def test_duplicate_node_names_are_rejected(node_doc: NodeDoc) -> None:
    with pytest.raises(ValueError, match="a node name unique in the inventory"):
        Inventory.from_descriptions([parse_document(node_doc("n1")), parse_document(node_doc("n1"))])


def test_an_agent_report_becomes_a_valid_node_description() -> None:
    doc = node_document_from_agent(agent_inventory(), "10.0.0.7:7000", continuum_layer="far_edge")
    node = parse_document(doc)
    assert isinstance(node, NodeDesc)
    assert (node.name, node.continuum_layer, node.arch) == ("worker-7", "far_edge", "arm64")
    assert (node.cpu_millis, node.memory_bytes) == (4000, 6 * 2**30 + 12345)
    assert node.runtimes == {"runc"} and node.agent_target == "10.0.0.7:7000" and node.cpufreq_available
    assert node.sensors == {"temperature"}  # offline devices do not offer their sensors
    assert doc["hardware"]["cpu"]["frequency"] == [800_000_000, 2_400_000_000]
    assert doc["cgroup"] == {"version": "v2", "root": "mlsysops", "controllers": ["cpu"]}
    runc = {"handler": "runc", "available": True, "version": "1.1", "runtime_class_name": "runc"}
    assert doc["runtimes"][0] == runc


def test_agent_facts_refresh_a_described_node_and_keep_what_only_the_description_knows(
    node_doc: NodeDoc,
) -> None:
    described = Inventory.from_descriptions(
        [
            parse_document(node_doc("worker-7", layer="edge", labels=["lab"], cluster_id="c1", cores=64)),
            parse_document(node_doc("other")),
        ]
    )
    inv = from_agents(
        ["10.0.0.7:7000"], described, fetch=lambda target: agent_inventory(), continuum_layer="cloud"
    )
    node = inv.node("worker-7")
    assert node is not None
    assert (node.continuum_layer, node.labels, node.cluster) == ("edge", frozenset({"lab"}), "c1")
    assert (node.cpu_millis_capacity, node.agent_target, node.arch) == (4000, "10.0.0.7:7000", "arm64")
    assert {n.name for n in inv.nodes} == {"worker-7", "other"}


def test_inventory_is_read_from_a_live_agent_over_grpc(agent_server: str) -> None:
    inv = from_agents([agent_server])
    (node,) = inv.nodes
    assert node.name == "grpc-node" and node.agent_target == agent_server
    assert fetch_inventory(agent_server).agent_version == "0.1.0"


def test_an_unreachable_agent_is_an_agent_error_naming_the_target() -> None:
    with socket.socket() as s:  # bound but not listening: connections are refused, and the port stays ours
        s.bind(("127.0.0.1", 0))
        target = f"127.0.0.1:{s.getsockname()[1]}"
        with pytest.raises(AgentError, match=f"node agent at {target}: UNAVAILABLE"):
            fetch_inventory(target, timeout=5.0)


def test_host_names_become_valid_object_names() -> None:
    doc = node_document_from_agent(agent_inventory("Edge_Box.LAB"), "unix:/run/a.sock", cluster_id="lab")
    assert doc["metadata"]["name"] == "edge-box.lab" and doc["name"] == "Edge_Box.LAB"
    node = parse_document(doc)
    assert isinstance(node, NodeDesc) and node.cluster_id == "lab"
