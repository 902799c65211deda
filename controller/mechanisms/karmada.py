"""The `karmada` mechanism: spread an app over member clusters with Karmada policies.

The kubernetes mechanism writes the resource templates (Deployments or Jobs, Services) to the Karmada
control plane; this one decides where they go:

- one PropagationPolicy per app, selecting the app's templates by name and placing them on
  the clusters the plan chose (`clusterAffinity.clusterNames`, replicas Duplicated);
- one OverridePolicy per workload that runs in only some of those clusters, setting its
  replicas to 0 elsewhere (a Job: `suspend: true`, so it never starts there): a per-app
  propagation policy sends every template to every chosen cluster, so the per-cluster
  difference is expressed as an override, as Karmada intends. The kubernetes renderer writes
  one workload per node, labelled with *that node's* cluster (replicas of one component may
  span clusters), so each cluster runs exactly the replicas placed in it;
- one ClusterPropagationPolicy per RuntimeClass the templates name (cluster-scoped, shared by
  apps), sending it to every cluster that runs a workload of ours naming it: in plan mode the
  app's own, in the daemon those of every app (one list per workload kind). It is deleted once
  no workload names its RuntimeClass.

Namespaced objects validate against the Karmada CRDs (policy.karmada.io/v1alpha1) and are owned
by the MLSysOpsApp, so deleting the app removes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from controller.kube import resources
from controller.mechanisms.base import MechanismContext, ObjectWriter, RealizeResult
from controller.mechanisms.kubernetes import (
    WORKLOADS,
    apply_if_changed,
    list_owned,
    runtime_classes_of,
    workloads_by_component,
)
from controller.mechanisms.kubernetes_objects import (
    ClusterPropagationPolicy,
    KarmadaPolicy,
    OverridePolicy,
    PlaintextOverrider,
    PropagationPolicy,
    Rendered,
    ResourceSelector,
    Workload,
)
from controller.mechanisms.kubernetes_render import (
    ANNOTATION_CLUSTER,
    LABEL_MANAGED_BY,
    LABEL_PART_OF,
    MANAGED_BY,
    app_selector,
    dns_name,
    metadata,
    with_hash,
)
from controller.mechanisms.kubernetes_render import render as render_templates
from controller.model import App
from controller.policies.base import Plan

API_VERSION: Final = "policy.karmada.io/v1alpha1"
REPLICAS_ZERO: PlaintextOverrider = {"path": "/spec/replicas", "operator": "replace", "value": 0}
# a Job in the clusters that do not run it: suspended, so it never starts there
SUSPENDED: PlaintextOverrider = {"path": "/spec/suspend", "operator": "add", "value": True}
TEMPLATE_KINDS = ("Deployment", "Job", "Service")
POLICIES = (resources.PROPAGATION_POLICY, resources.OVERRIDE_POLICY)
OURS = f"{LABEL_MANAGED_BY}={MANAGED_BY}"


def _selector(obj: Rendered) -> ResourceSelector:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "namespace": obj["metadata"].get("namespace", ""),
    }


def _labels(app: App) -> dict[str, str]:
    return {LABEL_PART_OF: dns_name(app.name), LABEL_MANAGED_BY: MANAGED_BY}


def propagation_policy(app: App, templates: Sequence[Rendered], clusters: list[str]) -> PropagationPolicy:
    """Every template of the app to every chosen cluster (replicas Duplicated)."""
    policy: PropagationPolicy = {
        "apiVersion": API_VERSION,
        "kind": "PropagationPolicy",
        "metadata": metadata(app, dns_name(app.name), _labels(app)),
        "spec": {
            "resourceSelectors": [_selector(o) for o in templates],
            "placement": {
                "clusterAffinity": {"clusterNames": clusters},
                "replicaScheduling": {"replicaSchedulingType": "Duplicated"},
            },
        },
    }
    return with_hash(policy)


def override_policy(app: App, workload: Workload, others: list[str]) -> OverridePolicy:
    """The workload stopped in the clusters that do not run it."""
    stop = SUSPENDED if workload["kind"] == "Job" else REPLICAS_ZERO
    policy: OverridePolicy = {
        "apiVersion": API_VERSION,
        "kind": "OverridePolicy",
        "metadata": metadata(app, workload["metadata"]["name"], _labels(app)),
        "spec": {
            "resourceSelectors": [_selector(workload)],
            "overrideRules": [
                {"targetCluster": {"clusterNames": others}, "overriders": {"plaintext": [stop]}}
            ],
        },
    }
    return with_hash(policy)


def runtime_class_policy(handler: str, clusters: Iterable[str]) -> ClusterPropagationPolicy:
    """The RuntimeClass to every member cluster that runs a workload naming it."""
    policy: ClusterPropagationPolicy = {
        "apiVersion": API_VERSION,
        "kind": "ClusterPropagationPolicy",
        "metadata": {"name": runtime_class_policy_name(handler), "labels": {LABEL_MANAGED_BY: MANAGED_BY}},
        "spec": {
            "resourceSelectors": [{"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "name": handler}],
            "placement": {
                "clusterAffinity": {"clusterNames": sorted(set(clusters))},
                "replicaScheduling": {"replicaSchedulingType": "Duplicated"},
            },
        },
    }
    return with_hash(policy)


def runtime_class_policy_name(handler: str) -> str:
    return dns_name("mlsysops-runtimeclass", handler, limit=253)


def workload_cluster(workload: Mapping[str, Any]) -> str | None:
    annotations = workload["metadata"].get("annotations") or {}
    found = annotations.get(ANNOTATION_CLUSTER)
    return str(found) if found else None


def runtime_class_clusters(workloads: Iterable[Mapping[str, Any]]) -> dict[str, set[str]]:
    """RuntimeClass name -> the clusters of the workloads naming it."""
    out: dict[str, set[str]] = {}
    for w in workloads:
        cluster = workload_cluster(w)
        for handler in runtime_classes_of([w]):
            if cluster:
                out.setdefault(handler, set()).add(cluster)
    return out


def render(app: App, plan: Plan) -> list[KarmadaPolicy]:
    """The app's policies; RuntimeClasses go to the clusters of this app's workloads (the daemon
    widens that to every app's, see KarmadaMechanism.realize)."""
    templates = [o for o in render_templates(app, plan) if o["kind"] in TEMPLATE_KINDS]
    workloads = [w for ws in workloads_by_component(templates).values() for w in ws]
    clusters = sorted(
        {c for w in workloads if (c := workload_cluster(w))}
        | {d.cluster for d in plan.decisions if d.cluster}
    )
    if not clusters:
        return []
    policies: list[KarmadaPolicy] = [propagation_policy(app, templates, clusters)]
    for workload in workloads:
        runs_in = workload_cluster(workload)
        others = [c for c in clusters if c != runs_in]
        if runs_in and others:
            policies.append(override_policy(app, workload, others))
    for handler, where in sorted(runtime_class_clusters(workloads).items()):
        policies.append(runtime_class_policy(handler, where))
    return policies


class KarmadaMechanism:
    """Writes the app's Karmada policies next to the kubernetes mechanism's templates."""

    name = "karmada"

    def __init__(self, api: ObjectWriter | None = None) -> None:
        self.api = api

    @classmethod
    def from_context(cls, context: MechanismContext) -> KarmadaMechanism:
        return cls(context.api)

    def render(self, app: App, plan: Plan) -> list[KarmadaPolicy]:
        return render(app, plan)

    def realize(self, app: App, plan: Plan) -> RealizeResult:
        api = self._require_api()
        rendered = self.render(app, plan)
        desired = [o for o in rendered if o["kind"] != "ClusterPropagationPolicy"]
        existing = list_owned(api, POLICIES, app)
        written: list[str] = []
        unchanged: list[str] = []
        for obj in desired:
            current = existing.get((obj["kind"], obj["metadata"]["name"]))
            apply_if_changed(api, obj, current, written, unchanged)
        wanted = {(o["kind"], o["metadata"]["name"]) for o in desired}
        for kind, name in sorted(set(existing) - wanted):
            api.delete(_resource(kind), app.namespace, name)
            written.append(f"{kind}/{name} (deleted)")
        if any(o["kind"] == "ClusterPropagationPolicy" for o in rendered) or self._has_runtime_policies(api):
            self._sync_runtime_class_policies(api, written, unchanged)
        return RealizeResult(mechanism=self.name, written=tuple(written), unchanged=tuple(unchanged))

    def remove(self, app_name: str, namespace: str) -> None:
        api = self._require_api()
        for res in POLICIES:
            for obj in api.list(res, namespace, app_selector(app_name))[0]:
                api.delete(res, namespace, obj["metadata"]["name"])
        self._sync_runtime_class_policies(api, [], [])

    @staticmethod
    def _has_runtime_policies(api: ObjectWriter) -> bool:
        return bool(api.list(resources.CLUSTER_PROPAGATION_POLICY, "", OURS)[0])

    @staticmethod
    def _sync_runtime_class_policies(api: ObjectWriter, written: list[str], unchanged: list[str]) -> None:
        """Every RuntimeClass to the clusters of every workload of ours naming it (all apps);
        the policy of a RuntimeClass no workload names any more is deleted."""
        workloads = [o for res in WORKLOADS for o in api.list(res, "", OURS)[0]]
        wanted = {
            runtime_class_policy_name(h): runtime_class_policy(h, where)
            for h, where in runtime_class_clusters(workloads).items()
        }
        current = {
            o["metadata"]["name"]: o for o in api.list(resources.CLUSTER_PROPAGATION_POLICY, "", OURS)[0]
        }
        for name, policy in sorted(wanted.items()):
            apply_if_changed(api, policy, current.get(name), written, unchanged)
        for name in sorted(set(current) - set(wanted)):
            api.delete(resources.CLUSTER_PROPAGATION_POLICY, "", name)
            written.append(f"ClusterPropagationPolicy/{name} (deleted)")

    def _require_api(self) -> ObjectWriter:
        if self.api is None:
            raise RuntimeError("the karmada mechanism was built without an API server (plan mode)")
        return self.api


def _resource(kind: str) -> resources.Resource:
    return resources.PROPAGATION_POLICY if kind == "PropagationPolicy" else resources.OVERRIDE_POLICY
