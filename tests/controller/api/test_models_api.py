"""`/api/v1/models` against a real MLflow registry (embedded SQLite + artifacts in a tmp dir): train
-> list -> show -> promote -> rollback -> explain, refusals that leave the registry as it was, and
the reference's /ml/ routes creating a model-server app on the stand-in Kubernetes API."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from controller.api.context import ApiSettings
from controller.kube import resources as R
from mlconnector.registry import MlflowRegistry

# the same generated grid as the model server's tests (plumbing only; the ML claims use recorded data)
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "mlconnector" / "api"))
from grid import write_grid

NAME = "latency_p95_ms"


@pytest.fixture
def registry(tmp_path: Path) -> MlflowRegistry:
    return MlflowRegistry.embedded(tmp_path / "models")


@pytest.fixture
def datasets(tmp_path: Path) -> Path:
    root = tmp_path / "datasets"
    root.mkdir()
    write_grid(root / "grid.csv")
    write_grid(root / "slow.csv", seed=1, slow=1.6)
    return root


@pytest.fixture
def api(make_client, registry, datasets):
    settings = ApiSettings(model_datasets=datasets, model_registry_uri=str(registry._directory))
    return make_client(settings, models=registry)


def snapshot(registry: MlflowRegistry) -> list[tuple[str, str, tuple[str, ...]]]:
    return [
        (v.name, v.version, tuple(sorted(v.aliases))) for n in registry.models() for v in registry.versions(n)
    ]


ROW = {"cpu_quota_cores": 1.0, "cpus": 2, "runtime_gvisor": 0, "offered_rps": 120.0}


def test_train_list_show_promote_rollback_explain(api, bearer, registry):
    op, viewer = bearer["operator"], bearer["viewer"]
    r = api.post(f"/api/v1/models/{NAME}/train", json={"dataset": "grid.csv", "reason": "first"}, headers=op)
    assert r.status_code == 200, r.text
    first = r.json()
    assert (
        first["promoted"] and first["version"]["version"] == "1" and "champion" in first["version"]["aliases"]
    )
    assert first["version"]["lineage"]["rows"] > 0 and first["version"]["signature"]["target"]["unit"] == "ms"

    r = api.post(f"/api/v1/models/{NAME}/train", json={"dataset": "slow.csv"}, headers=op)
    assert r.status_code == 200, r.text
    second = r.json()["version"]["version"]
    assert second == "2"

    listed = api.get("/api/v1/models", headers=viewer).json()
    assert [m["name"] for m in listed] == [NAME] and listed[0]["versions"] == 2
    shown = api.get(f"/api/v1/models/{NAME}", headers=viewer).json()
    assert [v["version"] for v in shown["history"]] == ["1", "2"]
    units = {f["name"]: f["unit"] for f in shown["history"][0]["signature"]["features"]}
    assert units["offered_rps"] == "req/s" and units["cpu_quota_cores"] == "cores"
    champion_before = shown["champion"]

    other = "1" if champion_before == "2" else "2"
    r = api.post(f"/api/v1/models/{NAME}/promote", json={"version": other}, headers=op)
    assert r.status_code == 200 and "champion" in r.json()["aliases"], r.text
    assert registry.get(NAME, "champion").version == other
    r = api.post(f"/api/v1/models/{NAME}/rollback", headers=op)
    assert r.status_code == 200 and r.json()["version"] == champion_before, r.text
    assert registry.get(NAME, "champion").version == champion_before

    r = api.post(f"/api/v1/models/{NAME}/explain", json={"row": ROW}, headers=viewer)
    assert r.status_code == 200, r.text
    e = r.json()
    assert e["model"] == f"{NAME}/{champion_before}"
    assert set(e["attributions"]) == set(ROW)
    assert e["prediction"] == pytest.approx(registry.load(NAME).predict([ROW])[0], rel=1e-6)
    if e["method"] == "shap":
        assert e["base_value"] + sum(e["attributions"].values()) == pytest.approx(e["prediction"], rel=1e-3)


def test_refusals_name_the_problem_and_leave_the_registry_unchanged(api, bearer, registry):
    op, viewer = bearer["operator"], bearer["viewer"]
    assert (
        api.post(f"/api/v1/models/{NAME}/train", json={"dataset": "grid.csv"}, headers=op).status_code == 200
    )
    before = snapshot(registry)

    cases = [
        (viewer, f"/api/v1/models/{NAME}/promote", {"version": "1"}, 403, "needs operator"),
        (op, "/api/v1/models/nope/promote", {"version": "1"}, 404, "no model 'nope'"),
        (op, f"/api/v1/models/{NAME}/promote", {"version": "9"}, 404, "no version '9'"),
        (op, f"/api/v1/models/{NAME}/promote", {}, 422, "version"),
        (op, f"/api/v1/models/{NAME}/rollback", None, 409, "model registry"),  # no previous champion
        (op, "/api/v1/models/nope/train", {}, 404, "named after the QoS metric"),
        (op, f"/api/v1/models/{NAME}/train", {"dataset": "../../etc/passwd"}, 403, "outside"),
        (op, f"/api/v1/models/{NAME}/train", {"dataset": "missing.csv"}, 422, "no such file"),
        (op, f"/api/v1/models/{NAME}/train", {"holdout_fraction": 2}, 422, "holdout_fraction"),
        (viewer, f"/api/v1/models/{NAME}/explain", {"row": {**ROW, "gpu": 1}}, 422, "unknown feature(s) gpu"),
        (viewer, f"/api/v1/models/{NAME}/explain", {"row": {"cpus": 2}}, 422, "missing feature(s)"),
        (viewer, f"/api/v1/models/{NAME}/explain", {"row": {**ROW, "cpus": "two"}}, 422, "finite number"),
    ]
    for headers, path, body, status, words in cases:
        r = api.post(path, json=body, headers=headers)
        assert r.status_code == status and words in r.json()["detail"], (path, body, r.status_code, r.text)
    assert api.get("/api/v1/models/nope", headers=viewer).status_code == 404
    assert snapshot(registry) == before


def test_without_the_ml_registry_the_routes_say_so(make_client, bearer):
    api = make_client()
    r = api.get("/api/v1/models", headers=bearer["viewer"])
    assert r.status_code == 503 and "mlsysops[ml]" in r.json()["detail"]


def test_deploy_ml_creates_an_app_running_the_model_server(api, bearer, registry, store):
    op, viewer = bearer["operator"], bearer["viewer"]
    r = api.post("/ml/deploy_ml", json={"model": NAME}, headers=op)
    assert r.status_code == 404 and "train one first" in r.json()["detail"]
    assert (
        api.post(f"/api/v1/models/{NAME}/train", json={"dataset": "grid.csv"}, headers=op).status_code == 200
    )

    r = api.post("/ml/deploy_ml", json={"model": NAME, "node_placement": {"node": "edge-1"}}, headers=op)
    assert r.status_code == 200, r.text
    uid = r.json()["model_uid"]
    assert uid == "model-latency-p95-ms" and r.json()["phase"] == "Submitted"
    app = store.get(R.APP, "default", uid)
    (component,) = app["components"]
    command = component["containers"][0]["command"]
    assert command[:3] == ["python", "-m", "mlconnector.serve"]
    assert command[command.index("--model") + 1] == NAME
    assert command[command.index("--registry") + 1] == str(registry._directory)
    assert component["node_placement"] == {"node": "edge-1"}

    assert api.get("/ml/list_all/", headers=viewer).json() == {
        "System_status": {uid: {"model": NAME, "status": "Submitted"}}
    }
    assert api.get(f"/ml/status/{uid}", headers=viewer).json()["model"] == NAME
    r = api.post("/ml/deploy_ml", json={"model": NAME}, headers=op)
    assert r.status_code == 409
    r = api.post("/ml/deploy_ml", json={"model": NAME, "replicas": 3}, headers=op)
    assert r.status_code == 422 and r.json()["field"] == "replicas"
    assert api.delete(f"/ml/remove/{uid}", headers=op).status_code == 200
    assert store.list(R.APP, "default")[0] == []
    assert api.get(f"/ml/status/{uid}", headers=viewer).status_code == 404
