"""The controller against a REAL cluster (KUBECONFIG): an app becomes running pods on the
cluster's own nodes, and deleting it lets the real garbage collector remove everything.

Needs deploy/crds/ installed (`kubectl apply -f deploy/crds/`) and rights to create a
namespace; skipped with the reason otherwise."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator

import pytest

pytestmark = [
    pytest.mark.kubernetes,
    pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="needs a real cluster: KUBECONFIG not set"),
]

from kubernetes import client  # noqa: E402

from controller.kube import resources as R  # noqa: E402
from controller.kube.api import KubeApi  # noqa: E402
from controller.kube.client import load_api_client  # noqa: E402
from controller.kube.errors import KubeError, NotFound  # noqa: E402
from controller.policies import PolicyRegistry  # noqa: E402
from controller.reconcile.bootstrap import Config, build  # noqa: E402
from mlsysops.testing import wait_for  # noqa: E402

ARCH = {"amd64": "amd64", "arm64": "arm64"}


@pytest.fixture
def cluster() -> Iterator[tuple[client.ApiClient, str]]:
    api_client = load_api_client(None)
    try:
        KubeApi(api_client).list(R.APP, "default")
    except NotFound:
        pytest.skip("the MLSysOps CRDs are not installed (kubectl apply -f deploy/crds/)")
    except KubeError as exc:
        pytest.skip(f"the cluster is not usable: {exc}")
    namespace = f"mlsysops-e2e-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": namespace}})
    try:
        yield api_client, namespace
    finally:
        core.delete_namespace(namespace)


def test_an_app_runs_on_the_clusters_nodes_and_is_garbage_collected(cluster):
    api_client, namespace = cluster
    kube = KubeApi(api_client)
    for node in client.CoreV1Api(api_client).list_node().items:
        arch = ARCH.get((node.metadata.labels or {}).get("kubernetes.io/arch", ""), "amd64")
        kube.apply({"apiVersion": "mlsysops.eu/v1", "kind": "MLSysOpsNode",
                    "metadata": {"name": node.metadata.name, "namespace": namespace},
                    "continuum_layer": "edge", "environment": {"container_runtime": ["containerd"]},
                    "hardware": {"cpu": {"architecture": arch, "cores": 2}, "memory": 2}},
                   field_manager="e2e")
    app = {"apiVersion": "mlsysops.eu/v1", "kind": "MLSysOpsApp",
           "metadata": {"name": "web", "namespace": namespace},
           "components": [{"metadata": {"name": "nginx"}, "node_placement": {"continuum_layer": ["*"]},
                           "containers": [{"image": "nginx:1.27-alpine",
                                           "platform_requirements": {"cpu": {"requests": "10m"},
                                                                     "memory": {"requests": "16Mi"}},
                                           "ports": [{"container_port": 80, "name": "http"}]}]}]}
    registry = PolicyRegistry.from_entry_points()
    controller = build(Config(namespace=namespace, mechanisms=("kubernetes",), availability_timeout=120),
                       api_client, registry=registry)
    stop = threading.Event()
    controller.start(stop)
    try:
        kube.apply(app, field_manager="e2e")
        wait_for(lambda: (kube.get(R.APP, namespace, "web").get("status") or {}).get("phase") == "Deployed",
                 timeout=300, what="the app Deployed (its pods available)", interval=0.5)
        assert len(kube.list(R.DEPLOYMENT, namespace)[0]) == 1
        assert len(kube.list(R.SERVICE, namespace)[0]) == 1
        kube.delete(R.APP, namespace, "web")
        wait_for(lambda: not kube.list(R.DEPLOYMENT, namespace)[0], timeout=120, what="garbage collection",
                 interval=0.5)
    finally:
        stop.set()
        controller.shutdown()
