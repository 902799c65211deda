"""`/api/v1/apps` with good and bad input, against the stand-in Kubernetes API: a valid app is
written (as field manager mlsysops-api, no status), a bad one is refused naming the field and
nothing is written."""

from __future__ import annotations

import copy

import pytest
from api_harness import DATA, reference_app, yaml_docs

from controller.kube import resources as R
from controller.model import to_kubernetes_form


@pytest.fixture
def app_doc():
    """The integration tests' app, in Kubernetes form."""
    return to_kubernetes_form(yaml_docs(DATA / "app.yaml")[0])[1]


def stored_apps(store):
    return [o["metadata"]["name"] for o in store.list(R.APP, "default")[0]]


def test_submit_writes_the_description_and_answers_submitted(client, bearer, store, app_doc):
    r = client.post("/api/v1/apps", json=app_doc, headers=bearer["operator"])
    assert r.status_code == 201, r.text
    assert r.json()["phase"] == "Submitted" and r.headers["location"] == "/api/v1/apps/camera-pipeline"
    obj = store.get(R.APP, "default", "camera-pipeline")
    assert "status" not in obj
    assert [m["manager"] for m in obj["metadata"]["managedFields"]] == ["mlsysops-api"]
    assert client.get("/api/v1/apps", headers=bearer["viewer"]).json()[0]["name"] == "camera-pipeline"
    got = client.get("/api/v1/apps/camera-pipeline", headers=bearer["viewer"]).json()
    assert got["components"] == obj["components"] and "managedFields" not in got["metadata"]


def test_submit_the_reference_wrapper_form(client, bearer, store):
    r = client.post("/api/v1/apps", json=reference_app(), headers=bearer["operator"])
    assert r.status_code == 201 and stored_apps(store) == ["test-application"]


def test_a_bad_description_names_the_field_and_writes_nothing(client, bearer, store, app_doc):
    bad = copy.deepcopy(app_doc)
    bad["components"][0]["restart_policy"] = "on_failure"
    r = client.post("/api/v1/apps", json=bad, headers=bearer["operator"])
    assert r.status_code == 422
    body = r.json()
    assert body["field"] == "MLSysOpsApp.components[0].restart_policy"
    assert (
        "Always, OnFailure, Never" in body["detail"] and body["problems"][0]["got"] == "string 'on_failure'"
    )
    assert stored_apps(store) == []


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"kind": "Deployment"}, "kind"),
        ({"MLSysOpsNode": {"name": "n1", "continuum_layer": "edge"}}, "kind"),
        ([1, 2], "body"),
    ],
)
def test_what_is_not_an_app_is_refused(client, bearer, store, doc, field):
    r = client.post("/api/v1/apps", json=doc, headers=bearer["operator"])
    assert r.status_code == 422, r.text
    assert field in r.text and stored_apps(store) == []


def test_a_body_that_is_not_json_is_422(client, bearer, store):
    r = client.post(
        "/api/v1/apps",
        content=b"{not json",
        headers={**bearer["operator"], "content-type": "application/json"},
    )
    assert r.status_code == 422 and stored_apps(store) == []


def test_an_oversized_body_is_413_before_parsing(make_client, bearer, store, app_doc):
    from controller.api.context import ApiSettings

    client = make_client(ApiSettings(max_body_bytes=512))
    r = client.post("/api/v1/apps", json=app_doc, headers=bearer["operator"])
    assert r.status_code == 413 and r.json()["field"] == "body"
    assert stored_apps(store) == []


def test_another_namespace_is_refused(client, bearer, store, app_doc):
    app_doc["metadata"]["namespace"] = "elsewhere"
    r = client.post("/api/v1/apps", json=app_doc, headers=bearer["operator"])
    assert r.status_code == 422 and r.json()["field"] == "MLSysOpsApp.metadata.namespace"


def test_submit_twice_is_409_and_put_updates(client, bearer, store, app_doc):
    assert client.post("/api/v1/apps", json=app_doc, headers=bearer["operator"]).status_code == 201
    r = client.post("/api/v1/apps", json=app_doc, headers=bearer["operator"])
    assert r.status_code == 409 and r.json()["field"] == "metadata.name"
    app_doc["components"][0]["containers"][0]["image"] = "registry.example/camera:2"
    r = client.put("/api/v1/apps/camera-pipeline", json=app_doc, headers=bearer["operator"])
    assert r.status_code == 200 and r.json()["generation"] == 2


def test_put_with_another_name_in_the_body_is_422(client, bearer, store, app_doc):
    r = client.put("/api/v1/apps/other", json=app_doc, headers=bearer["operator"])
    assert r.status_code == 422 and r.json()["field"] == "metadata.name" and stored_apps(store) == []


def test_unknown_apps_are_404_everywhere(client, bearer):
    for path in ("", "/status", "/explain", "/performance"):
        r = client.get(f"/api/v1/apps/nope{path}", headers=bearer["viewer"])
        assert r.status_code == 404 and "nope" in r.json()["detail"], path
    assert client.delete("/api/v1/apps/nope", headers=bearer["operator"]).status_code == 404


def test_delete_removes_the_app(client, bearer, store, app_doc):
    client.post("/api/v1/apps", json=app_doc, headers=bearer["operator"])
    assert client.delete("/api/v1/apps/camera-pipeline", headers=bearer["viewer"]).status_code == 403
    r = client.delete("/api/v1/apps/camera-pipeline", headers=bearer["operator"])
    assert r.status_code == 200 and r.json() == {"name": "camera-pipeline", "deleted": True}
    assert stored_apps(store) == []


def test_status_before_the_controller_ran_is_submitted_with_unknown_components(client, bearer, app_doc):
    client.post("/api/v1/apps", json=app_doc, headers=bearer["operator"])
    status = client.get("/api/v1/apps/camera-pipeline/status", headers=bearer["viewer"]).json()
    assert status["phase"] == "Submitted" and status["current"] is False
    assert [c["name"] for c in status["components"]] == [c["metadata"]["name"] for c in app_doc["components"]]
    for comp in status["components"]:
        assert {c["type"]: c["status"] for c in comp["conditions"]} == {
            "Placed": "Unknown",
            "Ready": "Unknown",
        }


class FakePerformance:
    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def app_performance(self, namespace, name):
        self.asked.append((namespace, name))
        return {
            "app": {"latency_ms": 12.5},
            "components": {"detector": {"cpu_seconds_total": 3.0, "memory_bytes": None}},
        }


def test_performance_needs_a_source_and_then_answers_from_it(make_client, bearer, app_doc):
    without = make_client()
    without.post("/api/v1/apps", json=app_doc, headers=bearer["operator"])
    r = without.get("/api/v1/apps/camera-pipeline/performance", headers=bearer["viewer"])
    assert r.status_code == 503 and "no performance source" in r.json()["detail"]
    source = FakePerformance()
    with_source = make_client(performance=source)
    r = with_source.get("/api/v1/apps/camera-pipeline/performance", headers=bearer["viewer"])
    assert r.status_code == 200 and r.json()["components"]["detector"]["cpu_seconds_total"] == 3.0
    assert source.asked == [("default", "camera-pipeline")]
    ref = with_source.get("/apps/performance/camera-pipeline", headers=bearer["viewer"]).json()
    assert ref == [
        ["latency_ms", {"value": 12.5}],
        ["detector.cpu_seconds_total", {"value": 3.0}],
        ["detector.memory_bytes", None],
    ]


def test_explain_of_an_unplanned_app_is_empty_and_an_unknown_component_404(client, bearer, store, app_doc):
    client.post("/api/v1/apps", json=app_doc, headers=bearer["operator"])
    assert client.get("/api/v1/apps/camera-pipeline/explain", headers=bearer["viewer"]).json() == []
    obj = store.get(R.APP, "default", "camera-pipeline")
    obj["status"] = {
        "phase": "Planned",
        "explanation": [
            {"component": "detector", "chosen": "edge-1", "reason": "best score", "candidates": []}
        ],
    }
    store.replace_status(R.APP, obj)
    r = client.get("/api/v1/apps/camera-pipeline/explain?component=detector", headers=bearer["viewer"])
    assert r.json()[0]["chosen"] == "edge-1"
    r = client.get("/api/v1/apps/camera-pipeline/explain?component=nope", headers=bearer["viewer"])
    assert r.status_code == 404 and r.json()["field"] == "component"
