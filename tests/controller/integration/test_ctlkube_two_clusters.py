"""Replicas spread over two member clusters (issue 12, defects 4 and 5), against the stand-in API
server, which validates every Karmada policy against ../shared/schemas/karmada: what each
cluster would run, read from the policies the controller wrote."""

from __future__ import annotations

from typing import Any

from ctlkube_harness import NAMESPACE, Running

from controller.kube import resources as R
from controller.kube.api import KubeApi
from controller.mechanisms.kubernetes_render import LABEL_COMPONENT
from mlsysops.testing import wait_for

APP = "spread"


def spread_app() -> dict[str, Any]:
    container = {"image": "registry.example.com/reader:1",
                 "platform_requirements": {"cpu": {"requests": "3"}, "memory": {"requests": "1Gi"}}}
    return {"apiVersion": "mlsysops.eu/v1", "kind": "MLSysOpsApp",
            "metadata": {"name": APP, "namespace": NAMESPACE},
            "components": [{"metadata": {"name": "reader"}, "runtime_class_name": "crun",
                            "node_placement": {"continuum_layer": ["edge"], "labels": ["camera"],
                                               "scaling": {"mode": "manual", "instances": 2}},
                            "containers": [container]}]}


def runs_in(kube: KubeApi, cluster: str) -> dict[str, int]:
    """What Karmada would run in `cluster`: component -> replicas (templates the propagation
    policy sends there, minus those an override stops there)."""
    [policy] = kube.list(R.PROPAGATION_POLICY, NAMESPACE)[0]
    if cluster not in policy["spec"]["placement"]["clusterAffinity"]["clusterNames"]:
        return {}
    stopped = {s["name"] for o in kube.list(R.OVERRIDE_POLICY, NAMESPACE)[0]
               for rule in o["spec"]["overrideRules"] if cluster in rule["targetCluster"]["clusterNames"]
               for s in o["spec"]["resourceSelectors"]}
    selected = {s["name"] for s in policy["spec"]["resourceSelectors"] if s["kind"] == "Deployment"}
    out: dict[str, int] = {}
    for dep in kube.list(R.DEPLOYMENT, NAMESPACE)[0]:
        name = dep["metadata"]["name"]
        if name in selected and name not in stopped:
            component = dep["metadata"]["labels"][LABEL_COMPONENT]
            out[component] = out.get(component, 0) + dep["spec"]["replicas"]
    return out


def runtime_classes_in(kube: KubeApi, cluster: str) -> list[str]:
    return sorted(s["name"] for p in kube.list(R.CLUSTER_PROPAGATION_POLICY, "")[0]
                  if cluster in p["spec"]["placement"]["clusterAffinity"]["clusterNames"]
                  for s in p["spec"]["resourceSelectors"] if s["kind"] == "RuntimeClass")


def test_replicas_in_two_clusters_each_run_where_placed_with_their_runtime_class(
        kube, world, controllers: Running):
    edge2 = next(d for d in world if d["metadata"]["name"] == "edge-2")
    kube.apply({**edge2, "cluster_id": "uth-north"}, field_manager="test-admin")
    kube.apply({"apiVersion": "mlsysops.eu/v1", "kind": "MLSysOpsCluster",
                "metadata": {"name": "uth-edge", "namespace": NAMESPACE},
                "cluster_id": "uth-edge", "nodes": ["cloud-1", "edge-1"]}, field_manager="test-admin")
    kube.apply(spread_app(), field_manager="test-user")
    controllers.start(mechanisms=("kubernetes", "karmada"))
    status = wait_for(lambda: (s := kube.get(R.APP, NAMESPACE, APP).get("status") or {}).get("phase")
                      == "Deployed" and s, what="spread Deployed")
    assert status["placement"][0]["replicas"] == 2

    # one replica in each cluster: each cluster runs exactly its own
    assert runs_in(kube, "uth-edge") == {"reader": 1}
    assert runs_in(kube, "uth-north") == {"reader": 1}
    deployments = kube.list(R.DEPLOYMENT, NAMESPACE)[0]
    assert {d["metadata"]["annotations"]["mlsysops.eu/cluster"] for d in deployments} == {"uth-edge",
                                                                                       "uth-north"}
    # the RuntimeClass reaches both member clusters (cluster-scoped: a ClusterPropagationPolicy)
    assert runtime_classes_in(kube, "uth-edge") == runtime_classes_in(kube, "uth-north") == ["crun"]

    kube.delete(R.APP, NAMESPACE, APP)
    wait_for(lambda: kube.list(R.CLUSTER_PROPAGATION_POLICY, "")[0] == [],
             what="the RuntimeClass policy gone")
