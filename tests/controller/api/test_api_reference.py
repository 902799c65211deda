"""The reference framework's route table, with its own example description and the shapes its
CLI reads (mlsysops-cli: `System_status`, `app_id`/`status`, details' components/pods,
performance pairs, remove's `app_id`, ping's `message`)."""

from __future__ import annotations

import pytest
from api_harness import DATA, reference_app, yaml_docs

from controller.api.policies import RegistryPolicyControl
from controller.api.server import API_POLICIES
from controller.kube import resources as R
from controller.mechanisms.kubernetes_render import deployment_name
from controller.policies import DEFAULT_CHAIN, PolicyRegistry


@pytest.fixture
def ref(make_client):
    return make_client(policies=RegistryPolicyControl(PolicyRegistry.from_entry_points(), DEFAULT_CHAIN))


def test_deploy_list_status_details_remove(ref, bearer, store):
    r = ref.post("/apps/deploy", json=reference_app(), headers=bearer["operator"])
    assert r.status_code == 200, r.text  # the reference CLI treats anything else as an error
    assert r.json() == {"app_id": "test-application", "status": "Submitted"}  # never "Deployed" on submit
    assert store.get(R.APP, "default", "test-application")["metadata"]["name"] == "test-application"
    assert ref.get("/apps/list_all/", headers=bearer["viewer"]).json() == {
        "System_status": {"test-application": "Submitted"}
    }
    assert ref.get("/apps/status/test-application", headers=bearer["viewer"]).json() == {
        "app_id": "test-application",
        "status": "Submitted",
    }
    details = ref.get("/apps/apps/details/test-application", headers=bearer["viewer"]).json()
    assert details["app_id"] == "test-application" and details["state"] == "Submitted"
    assert [c["name"] for c in details["components"]] == ["server-app", "client-app"]
    assert details["components"][0]["details"]["pods"] == "No matching pods found."
    r = ref.delete("/apps/remove/test-application", headers=bearer["operator"])
    assert r.status_code == 200 and r.json()["app_id"] == "test-application"
    assert store.list(R.APP, "default")[0] == []


def test_details_follow_the_status_the_controller_wrote(ref, bearer, store):
    ref.post("/apps/deploy", json=reference_app(), headers=bearer["operator"])
    obj = store.get(R.APP, "default", "test-application")
    obj["status"] = {
        "phase": "Deployed",
        "observedGeneration": 1,
        "placement": [
            {"component": "server-app", "node": "node-1", "cluster": "uth-prod-cluster"},
            {"component": "client-app", "node": "node-2", "cluster": "uth-prod-cluster"},
        ],
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Ready",
                "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
    }
    store.replace_status(R.APP, obj)
    details = ref.get("/apps/apps/details/test-application", headers=bearer["viewer"]).json()
    assert details["state"] == "Deployed"
    pods = details["components"][0]["details"]["pods"]
    assert pods == [
        {
            "pod_name": deployment_name("test-application", "server-app", "node-1", "uth-prod-cluster"),
            "pod_status": "Running",
            "node_name": "node-1",
            "cluster_name": "uth-prod-cluster",
        }
    ]
    assert ref.get("/apps/status/test-application", headers=bearer["viewer"]).json()["status"] == "Deployed"


def test_deploy_refuses_a_bad_reference_document_by_field(ref, bearer, store):
    doc = reference_app()
    doc["MLSysOpsApp"]["components"][0]["restart_policy"] = "Sometimes"
    r = ref.post("/apps/deploy", json=doc, headers=bearer["operator"])
    assert r.status_code == 422 and "MLSysOpsApp.components[0].restart_policy" in r.json()["detail"]
    assert store.list(R.APP, "default")[0] == []


def test_deploy_twice_and_unknown_ids(ref, bearer):
    ref.post("/apps/deploy", json=reference_app(), headers=bearer["operator"])
    assert ref.post("/apps/deploy", json=reference_app(), headers=bearer["operator"]).status_code == 409
    for path in ("/apps/status/nope", "/apps/apps/details/nope", "/apps/performance/nope"):
        r = ref.get(path, headers=bearer["viewer"])
        assert r.status_code == 404 and "nope" in r.json()["detail"], path
    assert ref.delete("/apps/remove/nope", headers=bearer["operator"]).status_code == 404


def test_infra_list_by_type_and_name(ref, bearer, store):
    for doc in yaml_docs(DATA / "inventory" / "nodes.yaml") + yaml_docs(DATA / "inventory" / "cluster.yaml"):
        store.apply({**doc, "metadata": {**doc["metadata"], "namespace": "default"}}, field_manager="test")
    everything = ref.get("/infra/list/", params={"type": "All"}, headers=bearer["viewer"]).json()
    assert [c["name"] for c in everything["clusters"]] == ["uth-edge"]
    assert sorted(n["name"] for n in everything["nodes"]) == ["cloud-1", "edge-1", "edge-2"]
    one = ref.get("/infra/list/", params={"type": "Cluster", "name": "uth-edge"}, headers=bearer["viewer"])
    assert list(one.json()) == ["clusters"] and one.json()["clusters"][0]["nodes"] == [
        "cloud-1",
        "edge-1",
        "edge-2",
    ]
    bad = ref.get("/infra/list/", params={"type": "Galaxy"}, headers=bearer["viewer"])
    assert bad.status_code == 422 and bad.json()["field"] == "type"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/ml/status/m1"),
        ("DELETE", "/ml/remove/m1"),
    ],
)
def test_ml_routes_answer_404_for_an_unknown_model_deployment(ref, bearer, method, path):
    """(Deploying a model is tested with a real registry in test_models_api.py.)"""
    r = ref.request(method, path, headers=bearer["operator"])
    assert r.status_code == 404 and "no model deployment 'm1'" in r.json()["detail"]
    assert ref.get("/ml/list_all/", headers=bearer["viewer"]).json() == {"System_status": {}}


def test_ping_answers_from_the_store(ref, bearer, standin):
    r = ref.get("/manage/ping", headers=bearer["viewer"])
    assert r.status_code == 200 and r.json()["message"] == "Agent Alive"
    standin.fail(503, count=1)
    r = ref.get("/manage/ping", headers=bearer["viewer"])
    assert r.status_code == 503 and "unreachable" in r.json()["detail"]


def test_mode_0_is_heuristic_1_is_ml_where_the_chain_has_an_ml_policy(ref, make_client, bearer):
    r = ref.put("/manage/mode/0", headers=bearer["admin"])
    assert r.status_code == 200 and r.json()["status"] == "success"
    r = ref.put("/manage/mode/1", headers=bearer["admin"])  # DEFAULT_CHAIN: no ML policy in it
    assert r.status_code == 409 and "qosLearnedPlacer" in r.json()["detail"]
    assert ref.get("/api/v1/policies/mode", headers=bearer["viewer"]).json() == {"mode": "heuristic"}
    api = make_client(policies=RegistryPolicyControl(PolicyRegistry.from_entry_points(), API_POLICIES))
    r = api.put("/manage/mode/1", headers=bearer["admin"])
    assert r.status_code == 200 and r.json()["status"] == "success"
    assert api.get("/api/v1/policies/mode", headers=bearer["viewer"]).json() == {"mode": "ml"}
    r = ref.put("/manage/mode/2", headers=bearer["admin"])
    assert r.status_code == 400 and r.json()["detail"] == "Mode must be 0 or 1"
    assert ref.put("/manage/mode/x", headers=bearer["admin"]).status_code == 422


def test_details_in_embedded_mode_name_the_local_workloads(make_client, bearer, store):
    from controller.api.context import ApiSettings

    client = make_client(ApiSettings(local_workloads=True))
    client.post("/apps/deploy", json=reference_app(), headers=bearer["operator"])
    obj = store.get(R.APP, "default", "test-application")
    obj["status"] = {
        "phase": "Deploying",
        "observedGeneration": 1,
        "placement": [{"component": "server-app", "node": "node-1", "replicas": 2}],
    }
    store.replace_status(R.APP, obj)
    pods = client.get("/apps/apps/details/test-application", headers=bearer["viewer"]).json()["components"][0]
    assert [p["pod_name"] for p in pods["details"]["pods"]] == [
        "test-application.server-app.0",
        "test-application.server-app.1",
    ]
    assert {p["pod_status"] for p in pods["details"]["pods"]} == {"Pending"}
