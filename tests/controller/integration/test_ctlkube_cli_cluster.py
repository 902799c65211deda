"""`mlsysops apps|nodes` in cluster mode (a kubeconfig) against the stand-in, with the controller
running: the CLI goes through controller.kube.store.AppStore, the controller does the rest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from ctlkube_harness import APP, FIXTURES

from controller.kube import resources as R
from controller.kube.errors import NotFound
from controller.kube.store import AppStore
from mlsysops.cli import main
from mlsysops.testing import wait_for


@pytest.fixture
def kubeconfig(standin, tmp_path: Path) -> str:
    path = tmp_path / "kubeconfig.yaml"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: standin, cluster: {{server: "{standin.host}"}}}}]
users: [{{name: tester, user: {{token: not-checked}}}}]
contexts: [{{name: standin, context: {{cluster: standin, user: tester, namespace: default}}}}]
current-context: standin
""")
    return str(path)


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_deploy_status_explain_and_delete_through_the_cli(kube, world, controllers, kubeconfig):
    controllers.start()
    deployed = cli("apps", "deploy", "-f", str(FIXTURES / "app.yaml"), "--kubeconfig", kubeconfig)
    assert "camera-pipeline" in deployed
    wait_for(lambda: (kube.get(R.APP, "default", APP).get("status") or {}).get("phase") == "Deployed",
             what="Deployed")

    listed = cli("apps", "list", "--kubeconfig", kubeconfig)
    assert "camera-pipeline" in listed and "Deployed" in listed and "4/4" in listed
    status = json.loads(cli("apps", "status", APP, "--kubeconfig", kubeconfig, "-o", "json"))
    assert "Deployed" in json.dumps(status)
    explained = cli("apps", "explain", APP, "--kubeconfig", kubeconfig)
    assert "dashboard" in explained and "cloud-1" in explained
    assert "edge-1" in cli("nodes", "list", "--kubeconfig", kubeconfig)

    cli("apps", "delete", APP, "--kubeconfig", kubeconfig)
    wait_for(lambda: not kube.list(R.DEPLOYMENT, "default")[0], what="the app's Deployments gone")


def test_the_app_store_contract(standin, world):
    from controller.kube.client import api_client_for_host

    store = AppStore(api_client_for_host(standin.host), "default")
    doc = {"apiVersion": "mlsysops.eu/v1", "kind": "MLSysOpsApp",
           "metadata": {"name": "tiny", "resourceVersion": "999", "uid": "stale"},
           "components": [{"metadata": {"name": "web"}, "containers": [{"image": "nginx:1.27"}]}],
           "status": {"phase": "Deployed"}}
    stored = store.apply_app(doc)
    assert stored["metadata"]["namespace"] == "default" and "status" not in stored
    assert store.apply_app(doc)["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]
    assert [a["metadata"]["name"] for a in store.list_apps()] == ["tiny"]
    assert store.get_app("tiny")["components"][0]["metadata"]["name"] == "web"
    assert sorted(n["metadata"]["name"] for n in store.list_nodes()) == ["cloud-1", "edge-1", "edge-2"]
    assert [c["cluster_id"] for c in store.list_clusters()] == ["uth-edge"]
    store.delete_app("tiny")
    with pytest.raises(NotFound):
        store.get_app("tiny")
    with pytest.raises(NotFound):
        store.delete_app("tiny")
