"""Karmada member-cluster readiness (issue 12): the controller with the karmada mechanism
watches Karmada's Cluster objects; a member cluster that is not Ready gets no placements (the
status says why), and once it reports Ready the apps waiting for it are placed there."""

from __future__ import annotations

from typing import Any

from ctlkube_harness import NAMESPACE, Running, StandIn
from kubernetes import client

from controller.kube import resources as R
from controller.kube.api import KubeApi
from controller.kube.client import api_client_for_host
from controller.kube.errors import NotFound
from controller.reconcile.informer import MEMBER_CLUSTER
from mlsysops.testing import wait_for


def node(name: str, cluster: str, cores: int) -> dict[str, Any]:
    return {"apiVersion": "mlsysops.eu/v1", "kind": "MLSysOpsNode",
            "metadata": {"name": name, "namespace": NAMESPACE}, "continuum_layer": "edge",
            "cluster_id": cluster, "environment": {"container_runtime": ["containerd"]},
            "hardware": {"cpu": {"architecture": "amd64", "cores": cores}, "memory": 16}}  # fmt: skip


def app(name: str, **fields: Any) -> dict[str, Any]:
    container = {"image": "registry.example.com/web:1",
                 "platform_requirements": {"cpu": {"requests": "500m"}, "memory": {"requests": "256Mi"}}}
    return {"apiVersion": "mlsysops.eu/v1", "kind": "MLSysOpsApp",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "components": [{"metadata": {"name": "web"}, "containers": [container],
                            "node_placement": {"continuum_layer": ["edge"]}}], **fields}  # fmt: skip


def set_ready(kube: KubeApi, host: str, cluster: str, ready: bool) -> None:
    """What `karmadactl join` creates and Karmada's cluster-status controller writes after its
    health checks (through the kubernetes client: the controller itself never writes Clusters)."""
    try:
        obj = kube.get(MEMBER_CLUSTER, "", cluster)
    except NotFound:
        obj = client.CustomObjectsApi(api_client_for_host(host)).create_cluster_custom_object(  # type: ignore[assignment]
            "cluster.karmada.io", "v1alpha1", "clusters",
            {"apiVersion": MEMBER_CLUSTER.api_version, "kind": "Cluster", "metadata": {"name": cluster},
             "spec": {"syncMode": "Push", "apiEndpoint": f"https://{cluster}.example.com:6443"}})  # fmt: skip
    condition = ({"type": "Ready", "status": "True", "reason": "ClusterReady",
                  "message": "cluster is healthy and ready to accept workloads"} if ready else
                 {"type": "Ready", "status": "False", "reason": "ClusterNotReachable",
                  "message": "cluster is not reachable"})  # fmt: skip
    kube.replace_status(MEMBER_CLUSTER, {**obj, "status": {"conditions": [condition]}})


def phase(kube: KubeApi, name: str) -> dict[str, Any]:
    return kube.get(R.APP, NAMESPACE, name).get("status") or {}


def test_a_member_cluster_that_is_not_ready_gets_nothing_until_karmada_reports_it_ready(
    kube: KubeApi, standin: StandIn, controllers: Running
) -> None:
    host = standin.host
    kube.apply(node("north-1", "uth-north", cores=16), field_manager="test-admin")  # the roomiest node
    kube.apply(node("south-1", "uth-south", cores=4), field_manager="test-admin")
    set_ready(kube, host, "uth-north", ready=False)
    set_ready(kube, host, "uth-south", ready=True)
    kube.apply(app("web"), field_manager="test-user")
    kube.apply(app("pinned", cluster_placement={"cluster_id": ["uth-north"]}), field_manager="test-user")
    controllers.start(mechanisms=("kubernetes", "karmada"))

    web = wait_for(lambda: (s := phase(kube, "web")).get("phase") == "Deployed" and s, what="web Deployed")
    assert [(p["node"], p["cluster"]) for p in web["placement"]] == [("south-1", "uth-south")]
    policy = kube.get(R.PROPAGATION_POLICY, NAMESPACE, "web")
    assert policy["spec"]["placement"]["clusterAffinity"]["clusterNames"] == ["uth-south"]

    pinned = wait_for(lambda: (s := phase(kube, "pinned")).get("conditions") and s, what="pinned planned")
    planned = next(c for c in pinned["conditions"] if c["type"] == "Planned")
    assert planned["status"] == "False" and planned["reason"] == "Unplaceable"
    assert "cluster_ready 1" in planned["message"]
    assert kube.list(R.DEPLOYMENT, NAMESPACE, "mlsysops.eu/app=pinned")[0] == []

    set_ready(kube, host, "uth-north", ready=True)  # the member is back: the waiting app is placed there
    pinned = wait_for(lambda: (s := phase(kube, "pinned")).get("phase") == "Deployed" and s,
                      what="pinned Deployed once uth-north is Ready")  # fmt: skip
    assert [p["cluster"] for p in pinned["placement"]] == ["uth-north"]
    kept = phase(kube, "web")["placement"]  # what runs stays where it is
    assert [p["node"] for p in kept] == ["south-1"]
