"""Schema-valid documents (Kubernetes form) → typed descriptions.

Runs after jsonschema validation, so types are already right; what can still be wrong here
are values the schema keeps as free strings (quantities such as "500m" or "2Gi"). Those are
collected as Problems with their paths instead of failing on the first one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from controller.model.descriptions import (
    ANYWHERE,
    App,
    ClusterDesc,
    ClusterPlacement,
    Component,
    Container,
    ContinuumDesc,
    DatacenterDesc,
    Description,
    DeviceDesc,
    Interaction,
    NodeDesc,
    NodePlacement,
    Port,
    QosMetric,
    Resources,
    Scaling,
    SingleNodeGroup,
)
from controller.model.errors import Problem, describe_value
from controller.model.quantity import QuantityError, cpu_millis, memory_bytes

Doc = Mapping[str, Any]
_GIB = 2**30


class _Problems:
    """Collects quantity problems while building, each with the user path."""

    def __init__(self) -> None:
        self.found: list[Problem] = []

    def quantity(self, value: Any, path: str, convert: Callable[[Any], int]) -> int | None:
        if value is None:
            return None
        try:
            return convert(value)
        except QuantityError as exc:
            self.found.append(Problem(path, str(exc), describe_value(value)))
            return None


def build(kind: str, doc: Doc) -> tuple[Description, list[Problem]]:
    problems = _Problems()
    name = doc["metadata"]["name"]
    namespace = doc["metadata"].get("namespace", "default")
    built: Description
    if kind == "MLSysOpsApp":
        built = _app(doc, name, namespace, problems)
    elif kind == "MLSysOpsNode":
        built = _node(doc, name, namespace, problems)
    elif kind == "MLSysOpsCluster":
        built = ClusterDesc(
            name, namespace, doc["cluster_id"], tuple(doc.get("nodes", ())), doc.get("datacenter_id"), raw=doc
        )
    elif kind == "MLSysOpsContinuum":
        built = ContinuumDesc(name, namespace, doc["continuum_id"], tuple(doc.get("clusters", ())), raw=doc)
    else:
        built = DatacenterDesc(
            name,
            namespace,
            doc["datacenter_id"],
            doc["cluster_id"],
            doc["continuum"],
            tuple(doc.get("nodes", ())),
            raw=doc,
        )
    return built, problems.found


# ---------------------------------------------------------------------------- applications


def _app(doc: Doc, name: str, namespace: str, problems: _Problems) -> App:
    components = tuple(
        _component(c, f"MLSysOpsApp.components[{i}]", problems)
        for i, c in enumerate(doc.get("components", ()))
    )
    for i, comp in enumerate(components):
        if comp.far_edge and comp.far_edge_code is None:
            images = [c.image for c in comp.containers if c.image]
            problems.found.append(Problem(
                f"MLSysOpsApp.components[{i}].containers[].image",
                "a far-edge component's code: exactly one image naming an app directory on the "
                "far-edge bridge's host (file:///path or /path)",
                describe_value(images[0] if len(images) == 1 else images),
            ))
    cp = doc.get("cluster_placement", {})
    return App(
        name=name,
        namespace=namespace,
        components=components,
        cluster_placement=ClusterPlacement(
            cluster_ids=tuple(cp.get("cluster_id", ())),
            instances=cp.get("instances"),
            accelerators=frozenset(cp.get("accelerators", ())),
            node_types=frozenset(cp.get("node_types", ())),
            cloud_provider=cp.get("cloud_provider"),
        ),
        single_node=tuple(
            SingleNodeGroup(tuple(g.get("components", ())), _placement(g)) for g in doc.get("single_node", ())
        ),
        interactions=tuple(
            Interaction(
                i.get("component_name1", ""),
                i.get("component_name2", ""),
                i.get("type"),
                i.get("interaction_criticality"),
            )
            for i in doc.get("component_interactions", ())
        ),
        permitted_actions=frozenset(doc.get("permitted_actions", ())),
        raw=doc,
    )


def _placement(p: Doc) -> NodePlacement:
    layers = frozenset(p.get("continuum_layer", ()))
    scaling = p.get("scaling")
    return NodePlacement(
        continuum_layers=frozenset() if ANYWHERE in layers else layers,
        labels=frozenset(p.get("labels", ())),
        node=p.get("node"),
        mobile=p.get("mobile"),
        scaling=Scaling(
            scaling.get("scaling_mode"), scaling.get("instances"), scaling.get("scaling_criteria")
        )
        if scaling is not None
        else None,
    )


def _component(c: Doc, path: str, problems: _Problems) -> Component:
    return Component(
        name=c["metadata"].get("name", ""),
        uid=c["metadata"].get("uid"),
        containers=tuple(
            _container(k, f"{path}.containers[{i}]", problems) for i, k in enumerate(c.get("containers", ()))
        ),
        placement=_placement(c.get("node_placement", {})),
        depends_on=tuple(c.get("depends_on", ())),
        runtime_class_name=c.get("runtime_class_name"),
        restart_policy=c.get("restart_policy"),
        host_network=bool(c.get("host_network", False)),
        external_access=bool(c.get("external_access", False)),
        external_component=bool(c.get("external_component", False)),
        qos_metrics=tuple(
            QosMetric(
                q.get("application_metric_id"),
                q.get("target"),
                q.get("relation"),
                tuple(q.get("system_metrics_hints", ())),
            )
            for q in c.get("qos_metrics", ())
        ),
        sensors=tuple(
            sorted({kind for s in c.get("sensors", ()) for kind in s if isinstance(s.get(kind), dict)})
        ),
        raw=c,
    )


def _container(k: Doc, path: str, problems: _Problems) -> Container:
    req = k.get("platform_requirements", {})
    cpu, mem, gpu, mcu = req.get("cpu", {}), req.get("memory", {}), req.get("gpu", {}), req.get("mcu", {})
    base = f"{path}.platform_requirements"
    resources = Resources(
        cpu_millis=problems.quantity(cpu.get("requests"), f"{base}.cpu.requests", cpu_millis) or 0,
        memory_bytes=problems.quantity(mem.get("requests"), f"{base}.memory.requests", memory_bytes) or 0,
        cpu_limit_millis=problems.quantity(cpu.get("limits"), f"{base}.cpu.limits", cpu_millis),
        memory_limit_bytes=problems.quantity(mem.get("limits"), f"{base}.memory.limits", memory_bytes),
        # mcu architectures are spelled arm-m4 in app descriptions and arm-M4 in node ones
        architectures=frozenset(cpu.get("architecture", ()))
        | {a.lower() for a in mcu.get("architecture", ())},
        gpus=_gpus_wanted(gpu),
        gpu_model=gpu.get("model"),
    )
    return Container(
        image=k.get("image"),
        command=tuple(k.get("command", ())),
        image_pull_policy=k.get("image_pull_policy"),
        ports=tuple(
            Port(
                p.get("container_port"),
                p.get("name"),
                p.get("protocol", "TCP"),
                p.get("host_port"),
                p.get("host_ip"),
            )
            for p in k.get("ports", ())
        ),
        env=tuple(k.get("env", ())),
        resources=resources,
        mcu=bool(mcu),
    )


def _gpus_wanted(gpu: Doc) -> int:
    """gpu.requests, or one GPU when only a model is named (asking for a model implies one)."""
    if gpu.get("requests"):
        return int(gpu["requests"])
    return 1 if gpu.get("model") else 0


# ---------------------------------------------------------------------------- nodes


def _node(doc: Doc, name: str, namespace: str, problems: _Problems) -> NodeDesc:
    # Optional sections are read only when present: 100,000 node documents are built at start-up.
    get = doc.get
    hw = get("hardware") or {}
    cpu = hw.get("cpu") or {}
    gpu = hw.get("gpu") or {}
    capacity, allocated = get("capacity") or {}, get("allocated") or {}
    cap_cpu = cap_mem = None
    if capacity:
        cap_cpu = problems.quantity(capacity.get("cpu"), "MLSysOpsNode.capacity.cpu", cpu_millis)
        cap_mem = problems.quantity(capacity.get("memory"), "MLSysOpsNode.capacity.memory", memory_bytes)
    alloc_cpu = alloc_mem = None
    if allocated:
        alloc_cpu = problems.quantity(allocated.get("cpu"), "MLSysOpsNode.allocated.cpu", cpu_millis)
        alloc_mem = problems.quantity(allocated.get("memory"), "MLSysOpsNode.allocated.memory", memory_bytes)
    devices = tuple(
        DeviceDesc(
            d["id"], d.get("kind"), d.get("transport"), d.get("online", True), tuple(d.get("sensors", ()))
        )
        for d in get("devices", ())
    )
    sensor_kinds = {kind for s in get("sensors", ()) for kind in s if isinstance(s.get(kind), dict)}
    sensor_kinds |= {s for d in devices if d.online for s in d.sensors}
    accelerators = {a for a in ("gpu", "fpga") if hw.get(a)}
    if capacity.get("gpus"):
        accelerators.add("gpu")
    return NodeDesc(
        name=name,
        namespace=namespace,
        continuum_layer=doc["continuum_layer"],
        cluster_id=get("cluster_id"),
        datacenter_id=get("datacenter_id"),
        labels=frozenset(get("labels", ())),
        arch=cpu.get("architecture") or (hw.get("mcu", {}).get("architecture") or "").lower() or None,
        cpu_millis=cap_cpu if cap_cpu is not None else int(cpu.get("cores", 0)) * 1000,
        memory_bytes=cap_mem if cap_mem is not None else int(hw.get("memory", 0)) * _GIB,
        gpus=capacity.get("gpus", int(gpu.get("instances", 1 if gpu else 0))),
        gpu_model=gpu.get("model"),
        accelerators=frozenset(accelerators),
        allocated_cpu_millis=alloc_cpu or 0,
        allocated_memory_bytes=alloc_mem or 0,
        allocated_gpus=allocated.get("gpus", 0),
        mobile=bool(get("mobile", False)),
        availability=get("availability"),
        permitted_actions=frozenset(get("permitted_actions", ())),
        runtimes=frozenset(r["handler"] for r in get("runtimes", ()) if r.get("available", True)),
        agent_target=(get("agent") or {}).get("target"),
        cpufreq_available=bool((get("cpufreq") or {}).get("available", False)),
        sensors=frozenset(sensor_kinds),
        devices=devices,
        microcontroller=bool(get("device")) or (bool(hw.get("mcu")) and not hw.get("cpu")),
        raw=doc,
    )
