"""The `karmada` mechanism: spread an app over member clusters with Karmada policies.

The kubernetes mechanism writes the resource templates (Deployments or Jobs, Services) to the Karmada
control plane; this one decides where they go:

- one PropagationPolicy per app, selecting the app's templates by name and placing them on
  the clusters the plan chose (`clusterAffinity.clusterNames`, replicas Duplicated);
- one OverridePolicy per component that runs in only some of those clusters, setting its
  replicas to 0 elsewhere (a Job: `suspend: true`, so it never starts there): a per-app
  propagation policy sends every template to every chosen cluster, so the per-cluster
  difference is expressed as an override, as Karmada intends.

Objects validate against the Karmada CRDs (policy.karmada.io/v1alpha1) and are owned by the
MLSysOpsApp, so deleting the app removes them.
"""

from __future__ import annotations

from controller.kube import resources
from controller.kube.api import Obj
from controller.mechanisms import kubernetes as k8s
from controller.mechanisms.base import RealizeResult
from controller.model import App
from controller.policies.base import Plan

API_VERSION = "policy.karmada.io/v1alpha1"
REPLICAS_ZERO = {"path": "/spec/replicas", "operator": "replace", "value": 0}
SUSPENDED = {"path": "/spec/suspend", "operator": "add", "value": True}  # a Job: never started there
TEMPLATE_KINDS = ("Deployment", "Job", "Service")


def _selector(obj: Obj) -> Obj:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "namespace": obj["metadata"]["namespace"],
    }


def render(app: App, plan: Plan) -> list[Obj]:
    placed = [d for d in plan.decisions if d.cluster]
    clusters = sorted({d.cluster for d in placed})
    if not clusters:
        return []
    templates = [o for o in k8s.render(app, plan) if o["kind"] in TEMPLATE_KINDS]
    labels = {k8s.LABEL_PART_OF: k8s.dns_name(app.name), k8s.LABEL_MANAGED_BY: k8s.MANAGED_BY}
    policies = [
        k8s.with_hash(
            {
                "apiVersion": API_VERSION,
                "kind": "PropagationPolicy",
                "metadata": k8s.metadata(app, k8s.dns_name(app.name), labels),
                "spec": {
                    "resourceSelectors": [_selector(o) for o in templates],
                    "placement": {
                        "clusterAffinity": {"clusterNames": clusters},
                        "replicaScheduling": {"replicaSchedulingType": "Duplicated"},
                    },
                },
            }
        )
    ]
    deployments: dict[str, list[Obj]] = {}
    for obj in templates:
        if obj["kind"] in k8s.WORKLOAD_KINDS:
            deployments.setdefault(obj["metadata"]["labels"][k8s.LABEL_COMPONENT], []).append(obj)
    for decision in placed:
        others = [c for c in clusters if c != decision.cluster]
        selected = deployments.get(k8s.dns_name(decision.component), [])
        if not others or not selected:
            continue
        policies.append(
            k8s.with_hash(
                {
                    "apiVersion": API_VERSION,
                    "kind": "OverridePolicy",
                    "metadata": k8s.metadata(app, k8s.dns_name(app.name, decision.component), labels),
                    "spec": {
                        "resourceSelectors": [_selector(d) for d in selected],
                        "overrideRules": [
                            {
                                "targetCluster": {"clusterNames": others},
                                "overriders": {"plaintext": [
                                    SUSPENDED if selected[0]["kind"] == "Job" else REPLICAS_ZERO]},
                            }
                        ],
                    },
                }
            )
        )
    return policies


class KarmadaMechanism:
    """Writes the app's Karmada policies next to the kubernetes mechanism's templates."""

    name = "karmada"

    def __init__(self, api: k8s.ObjectWriter | None = None) -> None:
        self.api = api

    def render(self, app: App, plan: Plan) -> list[Obj]:
        return render(app, plan)

    def realize(self, app: App, plan: Plan) -> RealizeResult:
        api = self._require_api()
        desired = self.render(app, plan)
        existing = k8s.list_owned(api, (resources.PROPAGATION_POLICY, resources.OVERRIDE_POLICY), app)
        written: list[str] = []
        unchanged: list[str] = []
        for obj in desired:
            current = existing.get((obj["kind"], obj["metadata"]["name"]))
            k8s.apply_if_changed(api, obj, current, written, unchanged)
        wanted = {(o["kind"], o["metadata"]["name"]) for o in desired}
        for kind, name in sorted(set(existing) - wanted):
            api.delete(_resource(kind), app.namespace, name)
            written.append(f"{kind}/{name} (deleted)")
        return RealizeResult(mechanism=self.name, written=tuple(written), unchanged=tuple(unchanged))

    def remove(self, app_name: str, namespace: str) -> None:
        api = self._require_api()
        for res in (resources.PROPAGATION_POLICY, resources.OVERRIDE_POLICY):
            for obj in api.list(res, namespace, k8s.app_selector(app_name))[0]:
                api.delete(res, namespace, obj["metadata"]["name"])

    def _require_api(self) -> k8s.ObjectWriter:
        if self.api is None:
            raise RuntimeError("the karmada mechanism was built without an API server (plan mode)")
        return self.api


def _resource(kind: str) -> resources.Resource:
    return resources.PROPAGATION_POLICY if kind == "PropagationPolicy" else resources.OVERRIDE_POLICY
