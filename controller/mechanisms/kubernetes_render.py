"""The kubernetes mechanism's renderer: an app and its plan → the exact objects to write.

Pure and deterministic (no I/O, no clock): plan mode prints what it returns, the executor
(controller.mechanisms.kubernetes) applies it, and karmada builds its policies on it. What is
rendered and why is described in the executor's module docstring; the names carry hashes so
that a relocation or a changed Job is a new object next to the old one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from controller.kube import resources
from controller.kube.api import FIELD_MANAGER
from controller.mechanisms.kubernetes_objects import (
    Affinity,
    ClusterPropagationPolicy,
    ContainerPort,
    Deployment,
    EnvVar,
    Job,
    JobSpec,
    NodeSelectorTerm,
    ObjectMeta,
    OverridePolicy,
    OwnerReference,
    PodSpec,
    PropagationPolicy,
    Rendered,
    ResourceRequirements,
    RuntimeClass,
    Service,
    ServicePort,
    ServiceSpec,
    Workload,
)
from controller.mechanisms.kubernetes_objects import Container as ContainerSpec
from controller.model import App, Component, Container, Port, Resources
from controller.model.errors import DescriptionError
from controller.policies.base import Decision, Plan

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
ANNOTATION_HASH = "mlsysops.eu/rendered-hash"
ANNOTATION_NODE = "mlsysops.eu/node"
ANNOTATION_CLUSTER = "mlsysops.eu/cluster"
MANAGED_BY = FIELD_MANAGER
NO_RUNTIME_CLASS = ("", "default")
DEPLOYMENT_RESTART = ("Always",)
JOB_RESTART = ("OnFailure", "Never")

# ---------------------------------------------------------------------- naming (shared with karmada)


def dns_name(*parts: str, limit: int = 63) -> str:
    """A DNS-1123 label from parts; too-long names keep a hash suffix, so they stay unique."""
    name = re.sub(r"[^a-z0-9-]+", "-", "-".join(p for p in parts if p).lower()).strip("-") or "x"
    if not name[0].isalpha():
        name = "c" + name
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-')}-{digest}"


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def deployment_name(app: str, component: str, node: str | None, cluster: str | None) -> str:
    return dns_name(app, component, short_hash(f"{cluster or ''}/{node or ''}"))


def job_name(app: str, component: str, node: str | None, cluster: str | None, spec: JobSpec) -> str:
    """Placement and spec in the name: a Job's template cannot change, so a change is a new Job."""
    placement = f"{cluster or ''}/{node or ''}"
    return dns_name(app, component, short_hash(placement + json.dumps(spec, sort_keys=True)))


def app_selector(app: str) -> str:
    """The label selector of everything the controller wrote for the app."""
    return f"{LABEL_PART_OF}={dns_name(app)},{LABEL_MANAGED_BY}={MANAGED_BY}"


# ---------------------------------------------------------------------- metadata and the rendered hash

_Stamped = TypeVar(
    "_Stamped", Deployment, Job, Service, RuntimeClass, PropagationPolicy, OverridePolicy,
    ClusterPropagationPolicy,
)


def content_hash(obj: Mapping[str, object]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def with_hash(obj: _Stamped) -> _Stamped:
    """The object with the hash of its content as an annotation: "changed?" is one comparison."""
    digest = content_hash(obj)
    obj["metadata"].setdefault("annotations", {})[ANNOTATION_HASH] = digest
    return obj


def rendered_hash(obj: Mapping[str, Any] | None) -> str | None:
    """The hash a rendered object (or its copy read back from the server) carries."""
    annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
    found = annotations.get(ANNOTATION_HASH)
    return str(found) if found is not None else None


def owner_references(app: App) -> list[OwnerReference]:
    uid = (app.raw.get("metadata") or {}).get("uid")
    if not uid:
        return []
    return [
        {
            "apiVersion": resources.APP.api_version,
            "kind": resources.APP.kind,
            "name": app.name,
            "uid": str(uid),
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def metadata(app: App, name: str, labels: Mapping[str, str], namespaced: bool = True) -> ObjectMeta:
    meta: ObjectMeta = {"name": name, "labels": dict(labels)}
    if namespaced:
        meta["namespace"] = app.namespace
        refs = owner_references(app)
        if refs:
            meta["ownerReferences"] = refs
    return meta


def _labels(app: str, component: str, instance: str) -> dict[str, str]:
    return {
        LABEL_NAME: dns_name(component),
        LABEL_INSTANCE: instance,
        LABEL_COMPONENT: dns_name(component),
        LABEL_PART_OF: dns_name(app),
        LABEL_MANAGED_BY: MANAGED_BY,
    }


def _placement_annotations(node: str | None, cluster: str | None) -> dict[str, str]:
    return {k: v for k, v in ((ANNOTATION_NODE, node), (ANNOTATION_CLUSTER, cluster)) if v}


# ---------------------------------------------------------------------- containers and pods


def _container(comp: Component, index: int, container: Container, path: str) -> ContainerSpec:
    if not container.image:
        raise DescriptionError.single(f"{path}.image", "a container image for the kubernetes mechanism")
    name = dns_name(comp.name if len(comp.containers) == 1 else f"{comp.name}-{index}")
    spec: ContainerSpec = {"name": name, "image": container.image}
    if container.command:
        spec["command"] = list(container.command)
    if container.image_pull_policy:
        spec["imagePullPolicy"] = container.image_pull_policy
    ports = [_port(p, p.container_port) for p in container.ports if p.container_port]
    if ports:
        spec["ports"] = ports
    env = [_env(e) for e in container.env]
    if env:
        spec["env"] = env
    res = _resources(container.resources)
    if res:
        spec["resources"] = res
    return spec


def _port(port: Port, number: int) -> ContainerPort:
    out: ContainerPort = {"containerPort": number, "protocol": port.protocol or "TCP"}
    if port.name:
        out["name"] = port.name
    if port.host_port:
        out["hostPort"] = port.host_port
    if port.host_ip:
        out["hostIP"] = port.host_ip
    return out


def _env(entry: Mapping[str, Any]) -> EnvVar:
    out: EnvVar = {"name": str(entry["name"])}
    if "value" in entry:
        out["value"] = str(entry["value"])
    field_path = ((entry.get("value_from") or {}).get("field_ref") or {}).get("field_path")
    if field_path:
        out["valueFrom"] = {"fieldRef": {"fieldPath": str(field_path)}}
    return out


def _resources(res: Resources) -> ResourceRequirements:
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if res.cpu_millis:
        requests["cpu"] = f"{res.cpu_millis}m"
    if res.memory_bytes:
        requests["memory"] = str(res.memory_bytes)
    if res.cpu_limit_millis:
        limits["cpu"] = f"{res.cpu_limit_millis}m"
    if res.memory_limit_bytes:
        limits["memory"] = str(res.memory_limit_bytes)
    if res.gpus:
        limits["nvidia.com/gpu"] = str(res.gpus)
    out: ResourceRequirements = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def _node_affinity(node: str) -> Affinity:
    term: NodeSelectorTerm = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}


def _pod_spec(comp: Component, index: int, node: str | None, restart_policy: str) -> PodSpec:
    """Static placements (`node_placement.node`) bind with nodeName, like the reference; a
    policy's choice is required node affinity, so the scheduler still checks resources and taints."""
    path = f"MLSysOpsApp.components[{index}]"
    pod: PodSpec = {
        "containers": [
            _container(comp, i, c, f"{path}.containers[{i}]") for i, c in enumerate(comp.containers)
        ],
        "restartPolicy": restart_policy,
    }
    if node and comp.placement.node == node:
        pod["nodeName"] = node
    elif node:
        pod["affinity"] = _node_affinity(node)
    if comp.runtime_class_name and comp.runtime_class_name not in NO_RUNTIME_CLASS:
        pod["runtimeClassName"] = comp.runtime_class_name
    if comp.host_network:
        pod["hostNetwork"] = True
    return pod


# ---------------------------------------------------------------------- workloads


def hosts(decision: Decision, comp: Component) -> list[tuple[str | None, int]]:
    """(node, replicas) pairs: a workload per distinct node when the plan spread the replicas
    (`Decision.nodes`, one per replica), else every replica of the description on `node` (or
    unpinned, when the plan chose only a cluster)."""
    per_replica = decision.nodes
    if per_replica:
        return sorted(Counter(per_replica).items())
    return [(decision.node, comp.replicas)]


def workload_kind(comp: Component, index: int) -> str:
    """Deployment for restart_policy Always (or none), Job for OnFailure/Never."""
    if comp.restart_policy in (None, *DEPLOYMENT_RESTART):
        return "Deployment"
    if comp.restart_policy in JOB_RESTART:
        return "Job"
    raise DescriptionError.single(  # the CRD schema already refuses it; kept for hand-built Apps
        f"MLSysOpsApp.components[{index}].restart_policy",
        f"one of {', '.join(DEPLOYMENT_RESTART + JOB_RESTART)}",
        repr(comp.restart_policy),
    )


def render_workload(
    app: App, comp: Component, index: int, node: str | None, cluster: str | None, replicas: int
) -> Workload:
    """The Deployment or the Job that runs `replicas` of the component on `node`."""
    if workload_kind(comp, index) == "Job":
        return render_job(app, comp, index, node, cluster, replicas)
    return render_deployment(app, comp, index, node, cluster, replicas)


def render_job(
    app: App, comp: Component, index: int, node: str | None, cluster: str | None, replicas: int
) -> Job:
    pod = _pod_spec(comp, index, node, comp.restart_policy or JOB_RESTART[0])
    spec: JobSpec = {"parallelism": replicas, "completions": replicas, "template": {"spec": pod}}
    name = job_name(app.name, comp.name, node, cluster, spec)
    labels = _labels(app.name, comp.name, name)
    spec["template"]["metadata"] = {"labels": labels}
    meta = metadata(app, name, labels)
    meta["annotations"] = _placement_annotations(node, cluster)
    # no selector: the API server generates it (a hand-written one needs manualSelector)
    job: Job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": spec}
    return with_hash(job)


def render_deployment(
    app: App, comp: Component, index: int, node: str | None, cluster: str | None, replicas: int
) -> Deployment:
    if workload_kind(comp, index) != "Deployment":
        raise DescriptionError.single(
            f"MLSysOpsApp.components[{index}].restart_policy",
            "Always for a Deployment (OnFailure/Never components are rendered as Jobs)",
            repr(comp.restart_policy),
        )
    name = deployment_name(app.name, comp.name, node, cluster)
    labels = _labels(app.name, comp.name, name)
    pod = _pod_spec(comp, index, node, "Always")
    meta = metadata(app, name, labels)
    meta["annotations"] = _placement_annotations(node, cluster)
    deployment: Deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {LABEL_INSTANCE: name}},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
    return with_hash(deployment)


# ---------------------------------------------------------------------- services and runtime classes


def render_service(app: App, comp: Component, external: bool) -> Service:
    """Selects on part-of + component, not on the instance: it spans the old and the new
    workload during a relocation. Headless when the component has no ports."""
    name = dns_name(app.name, comp.name)
    labels = _labels(app.name, comp.name, name)
    ports: list[ServicePort] = [
        {
            "name": p.name or f"p{p.container_port}-{(p.protocol or 'TCP').lower()}",
            "port": p.container_port,
            "targetPort": p.container_port,
            "protocol": p.protocol or "TCP",
        }
        for p in comp.ports
        if p.container_port
    ]
    spec: ServiceSpec = {
        "selector": {LABEL_PART_OF: labels[LABEL_PART_OF], LABEL_COMPONENT: labels[LABEL_COMPONENT]}
    }
    if ports:
        spec["ports"] = ports
        spec["type"] = "NodePort" if external else "ClusterIP"
    else:
        spec["clusterIP"] = "None"  # headless: DNS for the pods, no ports needed
    meta = metadata(app, name, labels)
    service: Service = {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}
    return with_hash(service)


def render_runtime_class(handler: str) -> RuntimeClass:
    runtime_class: RuntimeClass = {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": handler, "labels": {LABEL_MANAGED_BY: MANAGED_BY}},
        "handler": handler,
    }
    return with_hash(runtime_class)


def service_components(app: App) -> list[Component]:
    """Components reachable by others: with ports, or the receiving side of an interaction."""
    targets = {i.source if i.type == "ingress" else i.destination for i in app.interactions}
    return [c for c in app.components if c.ports or c.name in targets]


def runtime_handlers(components: Iterable[Component]) -> list[str]:
    """The RuntimeClass handlers these components name (cluster-scoped, shared by apps)."""
    named = {c.runtime_class_name for c in components if c.runtime_class_name}
    return sorted(named - set(NO_RUNTIME_CLASS))


def render(app: App, plan: Plan) -> list[Rendered]:
    """RuntimeClasses, then the workloads in `plan.order` (depends_on order), then Services.

    Only what runs here is rendered: an unplaced component (the status says why) and a far-edge
    one (the faredge mechanism hands it to its device's bridge) get no workload, no Service and
    no RuntimeClass."""
    decisions = {d.component: d for d in plan.decisions}
    order = list(plan.order) or [c.name for c in app.components]
    index = {c.name: i for i, c in enumerate(app.components)}
    workloads: list[Rendered] = []
    running: set[str] = set()
    for comp_name in order:
        decision = decisions.get(comp_name)
        if decision is None or (decision.node is None and decision.cluster is None):
            continue  # unplaced: nothing to run (the status says why)
        comp = app.component(comp_name)
        if comp.far_edge:
            continue  # firmware on a device, handed to its bridge by the faredge mechanism: never a Pod
        running.add(comp_name)
        workloads.extend(  # each workload labelled with the cluster of its own node
            render_workload(app, comp, index[comp_name], node, decision.cluster_of(node), replicas)
            for node, replicas in hosts(decision, comp)
        )
    used = [c for c in app.components if c.name in running]
    objects: list[Rendered] = [render_runtime_class(h) for h in runtime_handlers(used)]
    objects.extend(workloads)
    services = [c for c in service_components(app) if c.name in running]
    objects.extend(render_service(app, c, c.external_access) for c in services)
    return objects
