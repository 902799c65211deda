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

from collections.abc import Sequence
from typing import Final

from controller.kube import resources
from controller.mechanisms.base import MechanismContext, ObjectWriter, RealizeResult
from controller.mechanisms.kubernetes import apply_if_changed, list_owned, workloads_by_component
from controller.mechanisms.kubernetes_objects import (
    KarmadaPolicy,
    OverridePolicy,
    PlaintextOverrider,
    PropagationPolicy,
    Rendered,
    ResourceSelector,
    Workload,
)
from controller.mechanisms.kubernetes_render import (
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
from controller.policies.base import Decision, Plan

API_VERSION: Final = "policy.karmada.io/v1alpha1"
REPLICAS_ZERO: PlaintextOverrider = {"path": "/spec/replicas", "operator": "replace", "value": 0}
# a Job in the clusters that do not run it: suspended, so it never starts there
SUSPENDED: PlaintextOverrider = {"path": "/spec/suspend", "operator": "add", "value": True}
TEMPLATE_KINDS = ("Deployment", "Job", "Service")
POLICIES = (resources.PROPAGATION_POLICY, resources.OVERRIDE_POLICY)


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


def override_policy(
    app: App, decision: Decision, selected: Sequence[Workload], others: list[str]
) -> OverridePolicy:
    """The component's workloads stopped in the clusters that do not run it."""
    stop = SUSPENDED if selected[0]["kind"] == "Job" else REPLICAS_ZERO
    policy: OverridePolicy = {
        "apiVersion": API_VERSION,
        "kind": "OverridePolicy",
        "metadata": metadata(app, dns_name(app.name, decision.component), _labels(app)),
        "spec": {
            "resourceSelectors": [_selector(d) for d in selected],
            "overrideRules": [
                {"targetCluster": {"clusterNames": others}, "overriders": {"plaintext": [stop]}}
            ],
        },
    }
    return with_hash(policy)


def render(app: App, plan: Plan) -> list[KarmadaPolicy]:
    placed = [d for d in plan.decisions if d.cluster]
    clusters = sorted({d.cluster for d in placed if d.cluster})
    if not clusters:
        return []
    templates = [o for o in render_templates(app, plan) if o["kind"] in TEMPLATE_KINDS]
    policies: list[KarmadaPolicy] = [propagation_policy(app, templates, clusters)]
    workloads = workloads_by_component(templates)
    for decision in placed:
        others = [c for c in clusters if c != decision.cluster]
        selected = workloads.get(dns_name(decision.component), [])
        if others and selected:
            policies.append(override_policy(app, decision, selected, others))
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
        desired = self.render(app, plan)
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
        return RealizeResult(mechanism=self.name, written=tuple(written), unchanged=tuple(unchanged))

    def remove(self, app_name: str, namespace: str) -> None:
        api = self._require_api()
        for res in POLICIES:
            for obj in api.list(res, namespace, app_selector(app_name))[0]:
                api.delete(res, namespace, obj["metadata"]["name"])

    def _require_api(self) -> ObjectWriter:
        if self.api is None:
            raise RuntimeError("the karmada mechanism was built without an API server (plan mode)")
        return self.api


def _resource(kind: str) -> resources.Resource:
    return resources.PROPAGATION_POLICY if kind == "PropagationPolicy" else resources.OVERRIDE_POLICY
