"""The API daemon's in-process controller plans with the learning policy that reads the champions
of the API's own model registry (the registry the models routes train into), not with a copy of
the policy that has no models: its decisions name the champion, whether they trust it or fall
back because of its hold-out error, and never say there is no champion."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from controller.api.server import ServeConfig, wire
from controller.api.tokens import TokenStore
from controller.kube import resources as R
from mlconnector import training
from mlconnector.features import DATASET_PATH, load_dataset
from mlconnector.registry import MlflowRegistry
from mlsysops.testing import wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from ctlkube_harness import FIXTURES, documents

SLOW = 120  # a loaded 2-core machine reconciles slowly (a wait, not a timing check)
MODEL = "latency_p95_ms"
APP = {
    "apiVersion": "mlsysops.eu/v1",
    "kind": "MLSysOpsApp",
    "metadata": {"name": "tuned", "namespace": "default"},
    "name": "tuned",
    "components": [
        {
            "metadata": {"name": "api"},
            "qos_metrics": [{"application_metric_id": MODEL, "target": 150, "relation": "lower_or_equal"}],
            "containers": [
                {
                    "image": "registry.example.com/api:1",
                    "platform_requirements": {"cpu": {"requests": "500m"}, "memory": {"requests": "64Mi"}},
                }
            ],
        }
    ],
}


def test_the_in_process_controller_asks_the_apis_own_registry_for_champions(standin, store, tmp_path):
    registry = MlflowRegistry.embedded(tmp_path / "models")
    data = load_dataset(DATASET_PATH)
    trained = training.fit(data, training.LATENCY_SIGNATURE)
    metrics = dict(trained.metrics)
    version = registry.register(
        MODEL, trained.estimator, training.LATENCY_SIGNATURE, metrics=metrics, lineage=data.lineage()
    )
    registry.promote(MODEL, version.version)
    for doc in documents(FIXTURES / "inventory"):
        store.apply(doc, field_manager="test-admin")
    (tmp_path / "policies.json").write_text(json.dumps({"mode": "ml", "disabled": []}))  # the API's ML mode
    cfg = ServeConfig(
        tokens_file=tmp_path / "tokens.json",
        run_controller=True,
        mechanisms=("kubernetes",),
        policy_state=tmp_path / "policies.json",
        model_registry=str(tmp_path / "models"),
        controller_options={"watch_timeout": 1, "availability_timeout": 2.0, "workers": 1},
    )
    app, runner, policies = wire(cfg, store)
    admin = {"Authorization": f"Bearer {TokenStore(cfg.tokens_file).create('admin')[0]}"}
    assert runner is not None
    assert policies.chain() == ("staticPlacedComponents", "qosLearnedPlacer", "constraintAwarePlacer")
    runner.start(policies.chain())
    try:
        client = TestClient(app)
        assert client.post("/api/v1/apps", json=APP, headers=admin).status_code == 201
        explained = wait_for(
            lambda: (store.get(R.APP, "default", "tuned").get("status") or {}).get("explanation"),
            what="the app planned",
            timeout=SLOW,
        )
    finally:
        runner.stop()
    [decision] = [e for e in explained if e["component"] == "api"]
    said = json.dumps(decision["model"])
    assert "qosLearnedPlacer" in decision["reason"]
    assert "no champion" not in said, decision
    assert f"{MODEL}/{version.version}" in said, decision  # trusted, or refused for its hold-out error
