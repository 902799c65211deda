"""The system as policies see it: nodes with free capacity and capabilities, and clusters.

Sources, all ending in the same frozen values:
- descriptions (MLSysOpsNode/MLSysOpsCluster documents, from files or the API server);
- live node agents, through their gRPC `GetInventory` (`from_agents`): what a node reports is
  turned into an MLSysOpsNode document first (`node_document_from_agent`), so it passes the
  same CRD validation and becomes the same NodeInfo as a described node. The reconcile loop
  writes those documents as MLSysOpsNode objects.

`Inventory.index` (controller.nodeindex) precomputes what placement needs at scale (100,000
nodes): node sets by layer, arch, label, runtime handler, cluster and sensor, as bitmasks over
the free-capacity order, so a placement decision does not walk every node.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from controller.model import (
    API_VERSION,
    ClusterDesc,
    DescriptionError,
    NodeDesc,
    load_documents,
    parse_document,
)
from controller.nodeindex import NodeIndex
from mlsysops.nodeapi import NodeAgentClient, NodeApiError
from mlsysops.nodeconfig.v1 import nodeconfig_pb2

# uname machine → the reference's architecture names
ARCH_ALIASES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_GIB = 2**30


def free_fraction(cpu_free: int, cpu_cap: int, mem_free: int, mem_cap: int) -> float:
    """Fraction of a node left free (mean over cpu and memory); placement spreads load by it."""
    c = cpu_free / cpu_cap if cpu_cap > 0 else 0.0
    m = mem_free / mem_cap if mem_cap > 0 else 0.0
    return (c + m) / 2


@dataclass(frozen=True)
class NodeInfo:
    name: str
    cluster: str | None
    continuum_layer: str
    labels: frozenset[str] = frozenset()
    arch: str | None = None
    cpu_millis_free: int = 0
    memory_bytes_free: int = 0
    gpus: int = 0  # free GPUs
    runtimes: frozenset[str] = frozenset()  # runtime handlers the node agent reports available
    agent_target: str | None = None
    cpu_millis_capacity: int = 0
    memory_bytes_capacity: int = 0
    gpu_model: str | None = None
    accelerators: frozenset[str] = frozenset()
    mobile: bool = False
    permitted_actions: frozenset[str] = frozenset()
    cpufreq_available: bool = False
    sensors: frozenset[str] = frozenset()
    datacenter: str | None = None
    microcontroller: bool = False  # a far-edge device: no containers (NodeDesc.microcontroller)

    def permits(self, action: str) -> bool:
        return "*" in self.permitted_actions or action in self.permitted_actions

    @property
    def free_fraction(self) -> float:
        return free_fraction(
            self.cpu_millis_free, self.cpu_millis_capacity, self.memory_bytes_free, self.memory_bytes_capacity
        )

    @classmethod
    def from_description(cls, node: NodeDesc, cluster: str | None = None) -> NodeInfo:
        return cls(
            name=node.name,
            cluster=node.cluster_id or cluster,
            continuum_layer=node.continuum_layer,
            labels=node.labels,
            arch=node.arch,
            cpu_millis_free=max(0, node.cpu_millis - node.allocated_cpu_millis),
            memory_bytes_free=max(0, node.memory_bytes - node.allocated_memory_bytes),
            gpus=max(0, node.gpus - node.allocated_gpus),
            runtimes=node.runtimes,
            agent_target=node.agent_target,
            cpu_millis_capacity=node.cpu_millis,
            memory_bytes_capacity=node.memory_bytes,
            gpu_model=node.gpu_model,
            accelerators=node.accelerators,
            mobile=node.mobile,
            permitted_actions=node.permitted_actions,
            cpufreq_available=node.cpufreq_available,
            sensors=node.sensors,
            datacenter=node.datacenter_id,
            microcontroller=node.microcontroller,
        )


@dataclass(frozen=True)
class Inventory:
    nodes: tuple[NodeInfo, ...]
    clusters: tuple[ClusterDesc, ...] = ()
    # Node documents in Kubernetes form (described and/or reported by agents), by node name.
    documents: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, compare=False)
    # Member clusters their control plane does not report Ready (Karmada `Cluster` objects),
    # with why: their nodes get no placements (see `cluster_readiness`).
    unready_clusters: Mapping[str, str] = field(default_factory=dict)

    @functools.cached_property
    def index(self) -> NodeIndex:
        return NodeIndex(self.nodes, self.unready_clusters)

    @functools.cached_property
    def by_name(self) -> Mapping[str, NodeInfo]:
        return {n.name: n for n in self.nodes}

    def node(self, name: str) -> NodeInfo | None:
        return self.by_name.get(name)

    @classmethod
    def from_descriptions(cls, descriptions: Iterable[Any]) -> Inventory:
        """Nodes and clusters out of a mixed list of descriptions (apps are ignored).

        A node's cluster is its cluster_id or, failing that, the MLSysOpsCluster listing it."""
        descs = list(descriptions)
        clusters = tuple(d for d in descs if isinstance(d, ClusterDesc))
        member_of = {n: c.cluster_id for c in clusters for n in c.nodes}
        nodes = [d for d in descs if isinstance(d, NodeDesc)]
        seen: set[str] = set()
        for n in nodes:
            if n.name in seen:
                raise DescriptionError.single(
                    "MLSysOpsNode.metadata.name", "a node name unique in the inventory", repr(n.name)
                )
            seen.add(n.name)
        return cls(
            tuple(NodeInfo.from_description(n, member_of.get(n.name)) for n in nodes),
            clusters,
            {n.name: n.raw for n in nodes},
        )

    @classmethod
    def from_directory(cls, directory: str | Path, namespace: str = "default") -> Inventory:
        return cls.from_descriptions(load_documents(Path(directory), namespace))


def cluster_readiness(clusters: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The member clusters that are not Ready, with why, from Karmada `Cluster` objects
    (cluster.karmada.io/v1alpha1): Karmada sets the `Ready` condition from the member's health
    checks. A cluster without a Ready=True condition (not yet checked, unreachable, unhealthy)
    counts as not Ready: placing there would wait on a cluster that may never run it."""
    out: dict[str, str] = {}
    for obj in clusters:
        name = (obj.get("metadata") or {}).get("name")
        if not name:
            continue
        conditions = (obj.get("status") or {}).get("conditions") or []
        ready = next((c for c in conditions if c.get("type") == "Ready"), None)
        if ready is None:
            out[name] = "Karmada reports no Ready condition yet"
        elif ready.get("status") != "True":
            why = ": ".join(str(ready[k]) for k in ("reason", "message") if ready.get(k))
            out[name] = f"Karmada reports Ready={ready.get('status')}" + (f" ({why})" if why else "")
    return out


# ---------------------------------------------------------------------------- node agents

AgentFetch = Callable[[str], Any]  # target → nodeconfig.v1 Inventory message (or an equivalent object)


def from_agents(
    targets: Sequence[str],
    base: Inventory | None = None,
    fetch: AgentFetch | None = None,
    continuum_layer: str = "edge",
    namespace: str = "default",
    cluster_id: str | None = None,
) -> Inventory:
    """Add (or refresh) the nodes whose agents answer at `targets`.

    A node already described in `base` keeps what only a description knows (layer, cluster,
    labels, permitted actions); the agent's report replaces the live facts (hardware,
    capacity, runtimes, cgroup, cpufreq, devices). An unreachable agent raises AgentError
    naming the target: plan mode must not silently plan without a node the user asked for."""
    fetch = fetch or fetch_inventory
    base = base or Inventory(())
    docs = dict(base.documents)
    for target in targets:
        reported = node_document_from_agent(fetch(target), target, continuum_layer, namespace, cluster_id)
        name = reported["metadata"]["name"]
        docs[name] = merge_node_documents(docs.get(name), reported)
    descriptions: list[Any] = [parse_document(d, namespace) for d in docs.values()]
    inv = Inventory.from_descriptions([*descriptions, *base.clusters])
    undocumented = tuple(n for n in base.nodes if n.name not in docs)  # built without documents
    return replace(inv, nodes=inv.nodes + undocumented)


class AgentError(RuntimeError):
    """A node agent could not be reached or answered with an error."""


def fetch_inventory(target: str, timeout: float = 5.0) -> nodeconfig_pb2.Inventory:
    """GetInventory from the agent at target, through the shared node-API client."""
    try:
        with NodeAgentClient(target, timeout=timeout) as client:
            return client.inventory()
    except NodeApiError as exc:
        raise AgentError(f"node agent at {target}: {exc.code}: {exc.details}") from exc


def node_document_from_agent(
    inv: Any,
    target: str,
    continuum_layer: str = "edge",
    namespace: str = "default",
    cluster_id: str | None = None,
) -> dict[str, Any]:
    """An agent's Inventory message → an MLSysOpsNode document (Kubernetes form).

    The reference requires continuum_layer, environment and hardware; the agent does not know
    its layer or cluster (deployment decisions), so the caller supplies them (a description of
    the same node wins on merge)."""
    runtimes = [_runtime(r) for r in inv.runtimes]
    doc: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "MLSysOpsNode",
        "metadata": {"name": object_name(inv.node_name), "namespace": namespace},
        "name": inv.node_name,
        "continuum_layer": continuum_layer,
        **({"cluster_id": cluster_id} if cluster_id else {}),
        "environment": {"container_runtime": ["containerd"] if runtimes else []},
        "hardware": _hardware(inv),
        "agent": {"target": target, "version": inv.agent_version, "api_version": inv.api_version},
        "capacity": {"cpu": len(inv.cpus), "memory": int(inv.memory_bytes)},
        "runtimes": runtimes,
        "cpufreq": _cpufreq([c for c in inv.cpus if c.cpufreq_available]),
        "devices": [_device(d) for d in inv.devices],
    }
    cg = inv.cgroup
    if cg.version or cg.root:
        doc["cgroup"] = {
            **({"version": cg.version} if cg.version in ("v1", "v2", "hybrid") else {}),
            "root": cg.root,
            "controllers": [c.name for c in cg.controllers],
        }
    return doc


def device_node_document(
    device: Mapping[str, Any], host: str, namespace: str = "default", cluster_id: str | None = None
) -> dict[str, Any]:
    """A far-edge device an agent reports (an entry of its node's `devices`) → the device's own
    MLSysOpsNode (layer far_edge, in its host's cluster): placement can choose it for a far-edge
    component, and the faredge mechanism hands the code to the bridge under `device.id` (the
    object's name is that id made a Kubernetes name)."""
    device_id = str(device["id"])
    facts = {k: device[k] for k in ("kind", "transport", "firmware_version") if device.get(k)}
    return {
        "apiVersion": API_VERSION,
        "kind": "MLSysOpsNode",
        "metadata": {"name": object_name(device_id), "namespace": namespace},
        "name": device_id,
        "continuum_layer": "far_edge",
        **({"cluster_id": cluster_id} if cluster_id else {}),
        "environment": {"node_type": "bare_metal", "container_runtime": []},
        "hardware": {"memory": 0},
        "device": {"id": device_id, "host": host, **facts},
    }


def _runtime(r: Any) -> dict[str, Any]:
    return {
        "handler": r.handler,
        "available": r.available,
        **({"reason": r.reason} if r.reason else {}),
        **({"version": r.version} if r.version else {}),
        **({"runtime_class_name": r.runtime_class_name} if r.runtime_class_name else {}),
    }


def _hardware(inv: Any) -> dict[str, Any]:
    cpu: dict[str, Any] = {"cores": len(inv.cpus)}
    arch = ARCH_ALIASES.get(inv.architecture)
    if arch:
        cpu["architecture"] = arch
    freqs = sorted({f for c in inv.cpus if c.cpufreq_available for f in c.available_frequencies_khz})
    if freqs:
        cpu["frequency"] = [f * 1000 for f in freqs]
    return {"cpu": cpu, "memory": int(inv.memory_bytes // _GIB)}


def _cpufreq(freq_cpus: Sequence[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "available": bool(freq_cpus),
        "governors": sorted({g for c in freq_cpus for g in c.available_governors}),
    }
    if freq_cpus:
        out["min_khz"] = min(c.cpuinfo_min_khz for c in freq_cpus)
        out["max_khz"] = max(c.cpuinfo_max_khz for c in freq_cpus)
    return out


def _device(d: Any) -> dict[str, Any]:
    return {
        "id": d.id,
        "kind": d.kind,
        "online": d.online,
        "sensors": list(d.sensors),
        **({"transport": d.transport} if d.transport in ("mqtt", "serial") else {}),
        **({"firmware_version": d.firmware_version} if d.firmware_version else {}),
        "attributes": dict(d.attributes),
    }


def object_name(node_name: str) -> str:
    """A Kubernetes object name for a host name (lowercase; other characters become '-')."""
    name = re.sub(r"[^a-z0-9.-]+", "-", node_name.lower()).strip("-.")
    return name[:253] or "node"


# What an agent knows better than a description, and the other way round.
_REPORTED_FIELDS = ("agent", "capacity", "runtimes", "cgroup", "cpufreq", "devices")


def merge_node_documents(described: Mapping[str, Any] | None, reported: Mapping[str, Any]) -> dict[str, Any]:
    if described is None:
        return dict(reported)
    merged = dict(described)
    for key in _REPORTED_FIELDS:
        if key in reported:
            merged[key] = reported[key]
    hardware = dict(described.get("hardware", {}))
    rep_hw = reported.get("hardware", {})
    cpu = {**hardware.get("cpu", {}), **rep_hw.get("cpu", {})}
    hardware.update({"cpu": cpu, "memory": rep_hw.get("memory", hardware.get("memory"))})
    merged["hardware"] = hardware
    return merged
