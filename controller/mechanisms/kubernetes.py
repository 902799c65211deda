"""The `kubernetes` mechanism: a plan becomes Deployments or Jobs, Services and RuntimeClasses.

What it writes, and why:

- one Deployment per placed component *and placement*: its name carries a short hash of the
  node (or cluster), so relocating a component creates a new Deployment next to the old one;
  the old one is deleted only once the new one is Available (make-before-break, no gap in
  service). Static placements (`node_placement.node`) bind with `nodeName`, like the
  reference; policy choices use required node affinity on `metadata.name`, so the
  scheduler still checks resources and taints.
- a batch/v1 Job instead of the Deployment for a component whose `restart_policy` is
  `OnFailure` or `Never` (a Deployment's pods can only restart Always): same placement,
  labels, runtime class and owner reference, `restartPolicy` as given, one pod per replica
  (`parallelism` = `completions` = replicas). A Job's pod template is immutable and finished
  work cannot be "kept serving", so make-before-break does not apply: the Job's name carries a
  hash of its placement *and* its spec, any change creates a new Job under a new name and the
  old one is deleted (with its pods) in the same pass, right after the new one is written.
  A finished Job is left as it is (no TTL: a Job that disappeared would be rerun on the next
  resync); deleting it by hand reruns it. For `depends_on`, a Job counts as up once one of its
  pods is ready or it has completed.
- one Service per component that has ports or is the destination of a
  `component_interactions` entry (headless when it has no ports). It selects on part-of +
  component, not on the instance, so it spans the old and new Deployment during a relocation.
- the RuntimeClass of each `runtime_class_name` used (cluster-scoped, shared between apps,
  never deleted with an app).
- the `app.kubernetes.io/{name,instance,component,part-of,managed-by}` labels, and owner
  references to the MLSysOpsApp (when it has a uid, i.e. it is on a server), so deleting the
  app deletes everything through the garbage collector.

Writes are server-side apply under the field manager `mlsysops-controller`; each object
carries the hash of what was rendered, so "read, compare, write only if different" costs one
list per kind and an unchanged plan writes nothing. Components are applied in `depends_on`
order and a component is only applied once what it depends on is Available.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from controller.kube import resources
from controller.kube.api import FIELD_MANAGER, Obj
from controller.kube.errors import NotFound, NotReady
from controller.mechanisms.base import RealizeResult
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


class ObjectWriter(Protocol):
    """What the mechanism needs from an API server (controller.kube.api.KubeApi has it)."""

    def apply(self, obj: Obj) -> Obj: ...
    def get(self, res: resources.Resource, namespace: str, name: str) -> Obj: ...
    def list(
        self, res: resources.Resource, namespace: str = "", label_selector: str = ""
    ) -> tuple[list[Obj], str]: ...
    def delete(self, res: resources.Resource, namespace: str, name: str) -> bool: ...


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


def job_name(app: str, component: str, node: str | None, cluster: str | None, spec: Obj) -> str:
    """Placement and spec in the name: a Job's template cannot change, so a change is a new Job."""
    placement = f"{cluster or ''}/{node or ''}"
    return dns_name(app, component, short_hash(placement + json.dumps(spec, sort_keys=True)))


def service_name(app: str, component: str) -> str:
    return dns_name(app, component)


def app_selector(app: str) -> str:
    return f"{LABEL_PART_OF}={dns_name(app)},{LABEL_MANAGED_BY}={MANAGED_BY}"


def content_hash(obj: Obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def owner_references(app: App) -> list[Obj]:
    uid = (app.raw.get("metadata") or {}).get("uid")
    if not uid:
        return []
    return [
        {
            "apiVersion": resources.APP.api_version,
            "kind": resources.APP.kind,
            "name": app.name,
            "uid": uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def metadata(app: App, name: str, labels: Mapping[str, str], namespaced: bool = True) -> Obj:
    meta: Obj = {"name": name, "labels": dict(labels)}
    if namespaced:
        meta["namespace"] = app.namespace
        refs = owner_references(app)
        if refs:
            meta["ownerReferences"] = refs
    return meta


def rendered_hash(obj: Obj | None) -> str | None:
    return (((obj or {}).get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_HASH)


Owned = dict[tuple[str, str], Obj]


def list_owned(api: ObjectWriter, kinds: Iterable[resources.Resource], app: App) -> Owned:
    """The app's objects of these kinds on the server, keyed by (kind, name): one list per kind."""
    return {
        (o["kind"], o["metadata"]["name"]): o
        for res in kinds
        for o in api.list(res, app.namespace, app_selector(app.name))[0]
    }


def apply_if_changed(
    api: ObjectWriter, obj: Obj, current: Obj | None, written: list[str], unchanged: list[str]
) -> None:
    """Read, compare, write only if different: the rendered hash says whether it changed."""
    ident = f"{obj['kind']}/{obj['metadata']['name']}"
    if current is not None and rendered_hash(current) == rendered_hash(obj):
        unchanged.append(ident)
    else:
        api.apply(obj)
        written.append(ident)


def with_hash(obj: Obj) -> Obj:
    obj["metadata"].setdefault("annotations", {})[ANNOTATION_HASH] = content_hash(obj)
    return obj


# ---------------------------------------------------------------------- rendering (pure)


def _labels(app: str, component: str, instance: str) -> dict[str, str]:
    return {
        LABEL_NAME: dns_name(component),
        LABEL_INSTANCE: instance,
        LABEL_COMPONENT: dns_name(component),
        LABEL_PART_OF: dns_name(app),
        LABEL_MANAGED_BY: MANAGED_BY,
    }


def _container(comp: Component, index: int, container: Container, path: str) -> Obj:
    if not container.image:
        raise DescriptionError.single(f"{path}.image", "a container image for the kubernetes mechanism")
    name = dns_name(comp.name if len(comp.containers) == 1 else f"{comp.name}-{index}")
    spec: Obj = {"name": name, "image": container.image}
    if container.command:
        spec["command"] = list(container.command)
    if container.image_pull_policy:
        spec["imagePullPolicy"] = container.image_pull_policy
    ports = [_port(p) for p in container.ports if p.container_port]
    if ports:
        spec["ports"] = ports
    env = [_env(e) for e in container.env]
    if env:
        spec["env"] = env
    res = _resources(container.resources)
    if res:
        spec["resources"] = res
    return spec


def _port(port: Port) -> Obj:
    out: Obj = {"containerPort": port.container_port, "protocol": port.protocol or "TCP"}
    if port.name:
        out["name"] = port.name
    if port.host_port:
        out["hostPort"] = port.host_port
    if port.host_ip:
        out["hostIP"] = port.host_ip
    return out


def _env(entry: Mapping[str, Any]) -> Obj:
    out: Obj = {"name": entry["name"]}
    if "value" in entry:
        out["value"] = str(entry["value"])
    field_path = ((entry.get("value_from") or {}).get("field_ref") or {}).get("field_path")
    if field_path:
        out["valueFrom"] = {"fieldRef": {"fieldPath": field_path}}
    return out


def _resources(res: Resources) -> Obj:
    requests: Obj = {}
    limits: Obj = {}
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
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def _binding(comp: Component, node: str) -> Obj:
    if comp.placement.node == node:
        return {"nodeName": node}
    return {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
                    ]
                }
            }
        }
    }


def hosts(decision: Decision, comp: Component) -> list[tuple[str | None, int]]:
    """(node, replicas) pairs: a workload per distinct node when the plan spread the replicas
    (`Decision.nodes`, one per replica), else every replica of the description on `node` (or
    unpinned, when the plan chose only a cluster)."""
    per_replica = decision.nodes
    if per_replica:
        return sorted(Counter(per_replica).items())
    return [(decision.node, comp.replicas)]


DEPLOYMENT_RESTART = ("Always",)
JOB_RESTART = ("OnFailure", "Never")


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


def _pod_spec(comp: Component, index: int, node: str | None, restart_policy: str) -> Obj:
    path = f"MLSysOpsApp.components[{index}]"
    pod: Obj = {
        "containers": [
            _container(comp, i, c, f"{path}.containers[{i}]") for i, c in enumerate(comp.containers)
        ],
        "restartPolicy": restart_policy,
    }
    if node:
        pod.update(_binding(comp, node))
    if (comp.runtime_class_name or "") not in NO_RUNTIME_CLASS:
        pod["runtimeClassName"] = comp.runtime_class_name
    if comp.host_network:
        pod["hostNetwork"] = True
    return pod


def _placement_annotations(node: str | None, cluster: str | None) -> dict[str, str]:
    return {k: v for k, v in ((ANNOTATION_NODE, node), (ANNOTATION_CLUSTER, cluster)) if v}


def render_workload(
    app: Any, comp: Any, index: int, node: str | None, cluster: str | None, replicas: int
) -> Obj:
    """The Deployment or the Job that runs `replicas` of the component on `node`."""
    if workload_kind(comp, index) == "Job":
        return render_job(app, comp, index, node, cluster, replicas)
    return render_deployment(app, comp, index, node, cluster, replicas)


def render_job(app: Any, comp: Any, index: int, node: str | None, cluster: str | None, replicas: int) -> Obj:
    pod = _pod_spec(comp, index, node, comp.restart_policy)
    spec: Obj = {"parallelism": replicas, "completions": replicas, "template": {"spec": pod}}
    name = job_name(app.name, comp.name, node, cluster, spec)
    labels = _labels(app.name, comp.name, name)
    spec["template"]["metadata"] = {"labels": labels}
    meta = metadata(app, name, labels)
    meta["annotations"] = _placement_annotations(node, cluster)
    # no selector: the API server generates it (a hand-written one needs manualSelector)
    return with_hash({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": spec})


def render_deployment(
    app: Any, comp: Any, index: int, node: str | None, cluster: str | None, replicas: int
) -> Obj:
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
    return with_hash(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {LABEL_INSTANCE: name}},
                "template": {"metadata": {"labels": labels}, "spec": pod},
            },
        }
    )


def render_service(app: App, comp: Component, external: bool) -> Obj:
    name = service_name(app.name, comp.name)
    labels = _labels(app.name, comp.name, name)
    ports = [
        {
            "name": p.name or f"p{p.container_port}-{(p.protocol or 'TCP').lower()}",
            "port": p.container_port,
            "targetPort": p.container_port,
            "protocol": p.protocol or "TCP",
        }
        for p in comp.ports
        if p.container_port
    ]
    spec: Obj = {"selector": {LABEL_PART_OF: labels[LABEL_PART_OF], LABEL_COMPONENT: labels[LABEL_COMPONENT]}}
    if ports:
        spec["ports"] = ports
        spec["type"] = "NodePort" if external else "ClusterIP"
    else:
        spec["clusterIP"] = "None"  # headless: DNS for the pods, no ports needed
    return with_hash(
        {"apiVersion": "v1", "kind": "Service", "metadata": metadata(app, name, labels), "spec": spec}
    )


def render_runtime_class(handler: str) -> Obj:
    return with_hash(
        {
            "apiVersion": "node.k8s.io/v1",
            "kind": "RuntimeClass",
            "metadata": {"name": handler, "labels": {LABEL_MANAGED_BY: MANAGED_BY}},
            "handler": handler,
        }
    )


def service_components(app: App) -> list[Component]:
    """Components reachable by others: with ports, or the receiving side of an interaction."""
    targets = {i.source if i.type == "ingress" else i.destination for i in app.interactions}
    return [c for c in app.components if c.ports or c.name in targets]


def render(app: App, plan: Plan) -> list[Obj]:
    decisions = {d.component: d for d in plan.decisions}
    order = list(plan.order) or [c.name for c in app.components]
    index = {c.name: i for i, c in enumerate(app.components)}
    objects: list[Obj] = []
    for handler in sorted(
        {c.runtime_class_name for c in app.components if (c.runtime_class_name or "") not in NO_RUNTIME_CLASS}
    ):
        objects.append(render_runtime_class(handler))
    for comp_name in order:
        decision = decisions.get(comp_name)
        if decision is None or (decision.node is None and decision.cluster is None):
            continue  # unplaced: nothing to run (the status says why)
        comp = app.component(comp_name)
        objects.extend(
            render_workload(app, comp, index[comp_name], node, decision.cluster, replicas)
            for node, replicas in hosts(decision, comp)
        )
    objects.extend(render_service(app, c, c.external_access) for c in service_components(app))
    return objects


# ---------------------------------------------------------------------- realization


WORKLOADS = (resources.DEPLOYMENT, resources.JOB)
WORKLOAD_KINDS = tuple(r.kind for r in WORKLOADS)
OWNED = (resources.DEPLOYMENT, resources.JOB, resources.SERVICE)
_RESOURCE = {r.kind: r for r in OWNED}


def is_available(deployment: Obj) -> bool:
    """Available as `kubectl rollout status` sees it: the current generation observed and all
    desired replicas updated and available."""
    status = deployment.get("status") or {}
    want = (deployment.get("spec") or {}).get("replicas", 1)
    return (
        status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
        and status.get("updatedReplicas", 0) >= want
        and status.get("availableReplicas", 0) >= want
    )


def job_started(job: Obj) -> bool:
    """Up, for what depends on it: a pod of the Job is ready, or the Job already completed."""
    status = job.get("status") or {}
    complete = any(
        c.get("type") == "Complete" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    return complete or status.get("ready", 0) >= 1 or status.get("succeeded", 0) >= 1


def is_up(workload: Obj) -> bool:
    return job_started(workload) if workload.get("kind") == "Job" else is_available(workload)


class KubernetesMechanism:
    """Realizes plans on one Kubernetes API server (see the module docstring).

    Writes go out in waves along `depends_on`: everything without a pending dependency at
    once (up to `parallelism` requests in flight, as client-go's QPS allows), then, once one
    list shows the wave's Deployments Available (Jobs started), the components that depend on
    them."""

    name = "kubernetes"

    def __init__(
        self,
        api: ObjectWriter | None = None,
        availability_timeout: float = 30.0,
        poll_interval: float = 0.05,
        parallelism: int = 8,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api = api
        self.availability_timeout = availability_timeout
        self.poll_interval = poll_interval
        self.parallelism = parallelism
        self.clock, self.sleep = clock, sleep
        self._pool: ThreadPoolExecutor | None = None

    def render(self, app: App, plan: Plan) -> list[Obj]:
        return render(app, plan)

    def realize(self, app: App, plan: Plan) -> RealizeResult:
        api = self._require_api()
        desired = self.render(app, plan)
        existing = list_owned(api, OWNED, app)
        written: list[str] = []
        unchanged: list[str] = []
        changed = []
        for obj in desired:
            current = self._current(api, obj, existing)
            if current is not None and rendered_hash(current) == rendered_hash(obj):
                unchanged.append(f"{obj['kind']}/{obj['metadata']['name']}")
            else:
                changed.append(obj)
        by_component = _workloads_by_component(desired)
        for wave, objs in sorted(_waves(app, changed).items()):
            if wave:
                deps = {dns_name(d) for o in objs for d in app.component(_component_of(app, o)).depends_on}
                self._wait_available(
                    app, [d for c in sorted(deps) for d in by_component.get(c, [])], "dependencies"
                )
            self._apply_all(objs)
            written.extend(f"{o['kind']}/{o['metadata']['name']}" for o in objs)
        wanted = {(o["kind"], o["metadata"]["name"]) for o in desired}
        stale = [o for key, o in existing.items() if key not in wanted]
        self._retire(app, stale, by_component)
        written.extend(f"{o['kind']}/{o['metadata']['name']} (deleted)" for o in stale)
        return RealizeResult(mechanism=self.name, written=tuple(written), unchanged=tuple(unchanged))

    def close(self) -> None:
        """Stop the apply threads (the daemon's shutdown calls it)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def remove(self, app_name: str, namespace: str) -> None:
        """Delete everything this mechanism made for the app (the GC does too, through owner
        references; this also covers objects written before the app had a uid)."""
        api = self._require_api()
        for res in OWNED:
            for obj in api.list(res, namespace, app_selector(app_name))[0]:
                api.delete(res, namespace, obj["metadata"]["name"])

    # ------------------------------------------------------------------ internals

    def _require_api(self) -> ObjectWriter:
        if self.api is None:
            raise RuntimeError("the kubernetes mechanism was built without an API server (plan mode)")
        return self.api

    def _apply_all(self, objs: list[Obj]) -> None:
        api = self._require_api()
        if len(objs) <= 1 or self.parallelism <= 1:
            for obj in objs:
                api.apply(obj)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.parallelism, thread_name_prefix="k8s-apply")
        for future in [self._pool.submit(api.apply, obj) for obj in objs]:
            future.result()  # the first failure propagates; the rest were written or failed alike

    @staticmethod
    def _current(api: ObjectWriter, obj: Obj, existing: Mapping[tuple[str, str], Obj]) -> Obj | None:
        if obj["kind"] != "RuntimeClass":
            return existing.get((obj["kind"], obj["metadata"]["name"]))
        try:  # cluster-scoped and shared between apps: not among the app's listed objects
            return api.get(resources.RUNTIME_CLASS, "", obj["metadata"]["name"])
        except NotFound:
            return None

    def _retire(self, app: App, stale: Iterable[Obj], by_component: Mapping[str, list[Obj]]) -> None:
        """Delete what is no longer wanted. A relocated component's old Deployment goes only
        after its replacement is up; an old Job goes at once (its replacement was written
        earlier in this pass: finished or half-done work is not worth keeping alive)."""
        api = self._require_api()
        for obj in stale:
            if obj["kind"] == "Deployment":
                replacements = by_component.get(obj["metadata"]["labels"].get(LABEL_COMPONENT, ""), [])
                self._wait_available(app, replacements, f"the replacement of {obj['metadata']['name']}")
            api.delete(_RESOURCE[obj["kind"]], app.namespace, obj["metadata"]["name"])

    def _wait_available(self, app: App, workloads: list[Obj], what: str) -> None:
        """Poll (one list of the app's Deployments and/or Jobs per round) until these are up;
        NotReady after availability_timeout, so the loop retries later instead of blocking."""
        if not workloads:
            return
        api = self._require_api()
        kinds = [r for r in WORKLOADS if any(w["kind"] == r.kind for w in workloads)]
        deadline = self.clock() + self.availability_timeout
        while True:
            live = {
                (o["kind"], o["metadata"]["name"]): o
                for res in kinds
                for o in api.list(res, app.namespace, app_selector(app.name))[0]
            }
            pending = [
                w["metadata"]["name"]
                for w in workloads
                if not is_up(live.get((w["kind"], w["metadata"]["name"])) or _absent(w["kind"]))
            ]
            if not pending:
                return
            if self.clock() >= deadline:
                raise NotReady(f"{what}: not available yet: {', '.join(pending)}")
            self.sleep(self.poll_interval)


def _absent(kind: str) -> Obj:
    """What a workload not (yet) on the server looks like to is_up: not up."""
    return {"kind": kind, "metadata": {}}


def _workloads_by_component(objs: Iterable[Obj]) -> dict[str, list[Obj]]:
    out: dict[str, list[Obj]] = {}
    for obj in objs:
        if obj["kind"] in WORKLOAD_KINDS:
            out.setdefault(obj["metadata"]["labels"][LABEL_COMPONENT], []).append(obj)
    return out


def _waves(app: App, objs: Iterable[Obj]) -> dict[int, list[Obj]]:
    """Objects by depends_on depth: 0 for everything but the workloads of dependent components."""
    depth: dict[str, int] = {}

    def level(name: str, seen: frozenset[str] = frozenset()) -> int:
        if name not in depth:
            deps = [d for d in app.component(name).depends_on if d not in seen]
            depth[name] = 1 + max((level(d, seen | {name}) for d in deps), default=-1)
        return depth[name]

    waves: dict[int, list[Obj]] = {}
    for obj in objs:
        wave = level(_component_of(app, obj)) if obj["kind"] in WORKLOAD_KINDS else 0
        waves.setdefault(wave, []).append(obj)
    return waves


def _component_of(app: App, workload: Obj) -> str:
    label = workload["metadata"]["labels"][LABEL_COMPONENT]
    return next(c.name for c in app.components if dns_name(c.name) == label)
