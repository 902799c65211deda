"""Typed, frozen views of validated MLSysOps descriptions.

Each description keeps `.raw`: the validated document in Kubernetes form
(`{"apiVersion": "mlsysops.eu/v1", "kind": ..., "metadata": {...}, <fields at top level>}`),
which is what gets written to the API server; the typed fields are what policies read, with
quantities already converted to integers (millicores, bytes) and "anywhere" spelled as an empty
set rather than "*", so policies never re-parse strings.
"""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ANYWHERE = "*"


FILE_SCHEME = "file://"


def code_dir(image: str) -> str | None:
    """The absolute directory an image field names (`file:///x` or `/x`), normalised; None for
    anything else (an OCI reference, a relative path)."""
    path = image[len(FILE_SCHEME):] if image.startswith(FILE_SCHEME) else image
    return posixpath.normpath(path) if path.startswith("/") else None


@dataclass(frozen=True)
class Port:
    container_port: int | None
    name: str | None = None
    protocol: str = "TCP"
    host_port: int | None = None
    host_ip: str | None = None


@dataclass(frozen=True)
class Resources:
    """What one instance of a component asks for (the sum over its containers)."""

    cpu_millis: int = 0  # requests
    memory_bytes: int = 0
    cpu_limit_millis: int | None = None
    memory_limit_bytes: int | None = None
    architectures: frozenset[str] = frozenset()  # empty: any
    gpus: int = 0
    gpu_model: str | None = None

    def __add__(self, other: Resources) -> Resources:
        archs = (
            self.architectures & other.architectures
            if self.architectures and other.architectures
            else self.architectures | other.architectures
        )
        return Resources(
            self.cpu_millis + other.cpu_millis,
            self.memory_bytes + other.memory_bytes,
            _add_opt(self.cpu_limit_millis, other.cpu_limit_millis),
            _add_opt(self.memory_limit_bytes, other.memory_limit_bytes),
            archs,
            self.gpus + other.gpus,
            self.gpu_model or other.gpu_model,
        )


def _add_opt(a: int | None, b: int | None) -> int | None:
    return None if a is None and b is None else (a or 0) + (b or 0)


@dataclass(frozen=True)
class Container:
    image: str | None
    command: tuple[str, ...] = ()
    image_pull_policy: str | None = None
    ports: tuple[Port, ...] = ()
    env: tuple[Mapping[str, Any], ...] = ()
    resources: Resources = Resources()
    mcu: bool = False  # platform_requirements.mcu: code for a microcontroller, not a container image


@dataclass(frozen=True)
class Scaling:
    mode: str | None = None  # manual | auto
    instances: int | None = None
    criteria: str | None = None


@dataclass(frozen=True)
class NodePlacement:
    """Where a component may run. Empty sets mean "no constraint"."""

    continuum_layers: frozenset[str] = frozenset()
    labels: frozenset[str] = frozenset()
    node: str | None = None
    mobile: bool | None = None
    scaling: Scaling | None = None


@dataclass(frozen=True)
class QosMetric:
    application_metric_id: str | None
    target: float | None = None
    relation: str | None = None
    system_metrics_hints: tuple[str, ...] = ()


@dataclass(frozen=True)
class Component:
    name: str
    containers: tuple[Container, ...]
    placement: NodePlacement = NodePlacement()
    depends_on: tuple[str, ...] = ()
    uid: str | None = None
    runtime_class_name: str | None = None
    restart_policy: str | None = None
    host_network: bool = False
    external_access: bool = False
    external_component: bool = False
    qos_metrics: tuple[QosMetric, ...] = ()
    sensors: tuple[str, ...] = ()  # sensor kinds required (camera, temperature, ...)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def resources(self) -> Resources:
        total = Resources()
        for c in self.containers:
            total = total + c.resources
        return total

    @property
    def ports(self) -> tuple[Port, ...]:
        return tuple(p for c in self.containers for p in c.ports)

    @property
    def replicas(self) -> int:
        """Instances to run: scaling.instances when scaling is manual (or unspecified), else 1."""
        scaling = self.placement.scaling
        if scaling and scaling.instances is not None and scaling.mode != "auto":
            return scaling.instances
        return 1

    @property
    def system_metrics_hints(self) -> frozenset[str]:
        return frozenset(h for q in self.qos_metrics for h in q.system_metrics_hints)

    @property
    def far_edge_code(self) -> str | None:
        """A far-edge component's code: the app directory its one container's `image` names on
        the bridge's host (`file:///srv/app` or `/srv/app`); None when it names none (the
        description's check reports that)."""
        images = [c.image for c in self.containers if c.image]
        return code_dir(images[0]) if len(images) == 1 else None

    @property
    def far_edge(self) -> bool:
        """Runs on a far-edge device (its only layer is far_edge, or a container targets an mcu):
        realised through the device's bridge, never as a Pod."""
        return self.placement.continuum_layers == {"far_edge"} or any(c.mcu for c in self.containers)


@dataclass(frozen=True)
class ClusterPlacement:
    cluster_ids: tuple[str, ...] = ()
    instances: int | None = None
    accelerators: frozenset[str] = frozenset()
    node_types: frozenset[str] = frozenset()
    cloud_provider: str | None = None


@dataclass(frozen=True)
class SingleNodeGroup:
    """Components the reference requires on one node (overrides their node_placement)."""

    components: tuple[str, ...]
    placement: NodePlacement = NodePlacement()


@dataclass(frozen=True)
class Interaction:
    source: str
    destination: str
    type: str | None = None  # ingress | egress
    criticality: str | None = None


@dataclass(frozen=True)
class App:
    name: str
    namespace: str
    components: tuple[Component, ...]
    cluster_placement: ClusterPlacement = ClusterPlacement()
    single_node: tuple[SingleNodeGroup, ...] = ()
    interactions: tuple[Interaction, ...] = ()
    permitted_actions: frozenset[str] = frozenset()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)
    kind: str = "MLSysOpsApp"

    def component(self, name: str) -> Component:
        return self._by_name[name]

    @functools.cached_property
    def _by_name(self) -> Mapping[str, Component]:
        return {c.name: c for c in self.components}

    def permits(self, action: str) -> bool:
        """permitted_actions of the app: "*" allows everything; absent allows nothing."""
        return ANYWHERE in self.permitted_actions or action in self.permitted_actions


@dataclass(frozen=True)
class DeviceDesc:
    id: str
    kind: str | None = None
    transport: str | None = None
    online: bool = True
    sensors: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeDesc:
    name: str
    namespace: str
    continuum_layer: str
    cluster_id: str | None = None
    datacenter_id: str | None = None
    labels: frozenset[str] = frozenset()
    arch: str | None = None
    cpu_millis: int = 0  # schedulable capacity
    memory_bytes: int = 0
    gpus: int = 0
    gpu_model: str | None = None
    accelerators: frozenset[str] = frozenset()  # gpu, fpga, tpu present on the node
    allocated_cpu_millis: int = 0
    allocated_memory_bytes: int = 0
    allocated_gpus: int = 0
    mobile: bool = False
    availability: str | None = None
    permitted_actions: frozenset[str] = frozenset()
    runtimes: frozenset[str] = frozenset()  # handlers the agent reports available
    agent_target: str | None = None
    cpufreq_available: bool = False
    sensors: frozenset[str] = frozenset()  # sensor kinds on the node and its far-edge devices
    devices: tuple[DeviceDesc, ...] = ()
    # A far-edge device (a bridge's, or hardware with an mcu and no cpu): runs far-edge code
    # through its bridge, never a container.
    microcontroller: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)
    kind: str = "MLSysOpsNode"

    def permits(self, action: str) -> bool:
        return ANYWHERE in self.permitted_actions or action in self.permitted_actions


@dataclass(frozen=True)
class ClusterDesc:
    name: str
    namespace: str
    cluster_id: str
    nodes: tuple[str, ...] = ()
    datacenter_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)
    kind: str = "MLSysOpsCluster"


@dataclass(frozen=True)
class ContinuumDesc:
    name: str
    namespace: str
    continuum_id: str
    clusters: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)
    kind: str = "MLSysOpsContinuum"


@dataclass(frozen=True)
class DatacenterDesc:
    name: str
    namespace: str
    datacenter_id: str
    cluster_id: str
    continuum: str
    nodes: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)
    kind: str = "MLSysOpsDatacenter"


Description = App | NodeDesc | ClusterDesc | ContinuumDesc | DatacenterDesc
